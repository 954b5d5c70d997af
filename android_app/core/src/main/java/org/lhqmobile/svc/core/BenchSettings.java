package org.lhqmobile.svc.core;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * The benchmark activity's settings, from the intent extras that {@code compress bench --mode app}
 * passes with {@code am start --es / --ei / --ef}:
 *
 * <pre>
 * model_path    (string, required)  the .pte, e.g. /data/local/tmp/device_bench_app/model.pte
 * warmup        (int, default 3)    untimed forward calls first, per repeat
 * iterations    (int, default 20)   timed forward calls per repeat
 * repeats       (int, default 1)    loads of the program, each with its warmup and iterations
 * threads       (int, default 1)    ExecuTorch threads (0: the runtime's default)
 * input_path    (string, optional)  raw inputs (device_bench's input file); else a test tone
 * audio_seconds (float, optional)   audio per call for the RTF; else the chunk in the metadata
 * result_name   (string, default bench_result.json)  file name under the app's bench folder
 * serial        (string, optional)  the adb serial, recorded in the result
 * </pre>
 *
 * Every problem is reported at once, as {@code device_bench.protocol.BenchConfig} does.
 */
public final class BenchSettings {
    public static final String DEFAULT_RESULT = "bench_result.json";
    private static final Pattern RESULT_NAME = Pattern.compile("[A-Za-z0-9._-]+\\.json");

    public final String modelPath;
    public final int warmup;
    public final int iterations;
    public final int repeats;
    public final int threads;
    public final String inputPath;
    public final Double audioSeconds;
    public final String resultName;
    public final String serial;

    private BenchSettings(String modelPath, int warmup, int iterations, int repeats, int threads,
            String inputPath, Double audioSeconds, String resultName, String serial) {
        this.modelPath = modelPath;
        this.warmup = warmup;
        this.iterations = iterations;
        this.repeats = repeats;
        this.threads = threads;
        this.inputPath = inputPath;
        this.audioSeconds = audioSeconds;
        this.resultName = resultName;
        this.serial = serial;
    }

    /** Read and check the extras (key -> String / Integer / Long / Float / Double). */
    public static BenchSettings fromExtras(Map<String, ?> extras) throws CoreException {
        List<String> problems = new ArrayList<String>();
        String model = string(extras, "model_path", problems);
        if (model == null || model.isEmpty()) {
            problems.add("model_path is missing (expected --es model_path /path/to/model.pte)");
        } else if (!model.endsWith(".pte")) {
            problems.add("model_path=" + model + " (expected a .pte program)");
        }
        int warmup = integer(extras, "warmup", 3, 0, problems);
        int iterations = integer(extras, "iterations", 20, 1, problems);
        int repeats = integer(extras, "repeats", 1, 1, problems);
        int threads = integer(extras, "threads", 1, 0, problems);
        String input = string(extras, "input_path", problems);
        Double seconds = null;
        Object s = extras.get("audio_seconds");
        if (s instanceof Number) {
            seconds = ((Number) s).doubleValue();
            if (!(seconds > 0)) {
                problems.add("audio_seconds=" + seconds + " (expected > 0)");
            }
        } else if (s != null) {
            problems.add("audio_seconds=" + s + " (expected a number: --ef audio_seconds 1.0)");
        }
        String result = string(extras, "result_name", problems);
        if (result == null) {
            result = DEFAULT_RESULT;
        } else if (!RESULT_NAME.matcher(result).matches()) {
            problems.add("result_name=" + result + " (expected a file name such as r1.json: "
                    + "letters, digits, . _ -, ending in .json)");
        }
        String serial = string(extras, "serial", problems);
        if (!problems.isEmpty()) {
            throw new CoreException("invalid benchmark settings: " + String.join("; ", problems));
        }
        return new BenchSettings(model, warmup, iterations, repeats, threads,
                input == null || input.isEmpty() ? null : input, seconds, result, serial);
    }

    /**
     * {@code value} when it is a valid result file name, else {@link #DEFAULT_RESULT}: where a
     * run whose extras were refused still reports its failure (never a path outside the folder).
     */
    public static String safeResultName(Object value) {
        return value instanceof String && RESULT_NAME.matcher((String) value).matches()
                ? (String) value : DEFAULT_RESULT;
    }

    private static String string(Map<String, ?> extras, String key, List<String> problems) {
        Object v = extras.get(key);
        if (v == null || v instanceof String) {
            return (String) v;
        }
        problems.add(key + "=" + v + " (expected a string: --es " + key + " VALUE)");
        return null;
    }

    private static int integer(Map<String, ?> extras, String key, int dflt, int min,
            List<String> problems) {
        Object v = extras.get(key);
        if (v == null) {
            return dflt;
        }
        long x;
        if (v instanceof Integer || v instanceof Long) {
            x = ((Number) v).longValue();
        } else if (v instanceof String && ((String) v).matches("-?[0-9]{1,9}")) {
            x = Long.parseLong((String) v);
        } else {
            problems.add(key + "=" + v + " (expected an integer: --ei " + key + " N)");
            return dflt;
        }
        if (x < min) {
            problems.add(key + "=" + x + " (expected >= " + min + ")");
            return dflt;
        }
        return (int) x;
    }
}
