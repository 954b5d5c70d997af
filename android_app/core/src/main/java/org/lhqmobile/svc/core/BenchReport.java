package org.lhqmobile.svc.core;

import java.io.File;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.text.SimpleDateFormat;
import java.util.ArrayList;
import java.util.Date;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TimeZone;
import java.util.TreeSet;

/**
 * A {@code bench_result.v1} document ({@code device_bench/schema/bench_result.v1.json}) built the
 * way {@code device_bench.result.build_result} builds it: the latencies of all repeats pooled for
 * the statistics, the load time the median over repeats, memory the maximum, the per-repeat p50s
 * for the replication check (flag {@code replication_spread_above_threshold} over 5 %), status
 * {@code ok}, {@code partial} (errors after some repeats) or {@code failed} (none).
 */
public final class BenchReport {
    public static final String PRODUCER = "android_app";
    public static final String VERSION = "0.1.0";
    public static final String[] METRIC_KEYS = {
        "avg_inference_latency(ms)", "trimmean_inference_latency(ms)", "model_load_time(ms)",
        "ram_pss_usage(mb)", "min_inference_latency(ms)", "p50_inference_latency(ms)",
        "p90_inference_latency(ms)", "max_inference_latency(ms)", "std_inference_latency(ms)",
        "peak_rss(mb)", "rtf",
    };

    private final String target;
    private final Map<String, Object> device;
    private final Map<String, Object> model;
    private final Map<String, Object> config;
    private final Double audioSeconds;
    private final List<Map<String, Object>> repeats = new ArrayList<Map<String, Object>>();
    private final TreeSet<String> flags = new TreeSet<String>();
    private final List<String> errors = new ArrayList<String>();

    /**
     * @param settings the run's settings (its config block)
     * @param device a device block ({@link DeviceFacts#deviceBlock})
     * @param model a model block ({@link #modelBlock})
     * @param audioSeconds audio per forward call for the real-time factor, or null
     */
    public BenchReport(BenchSettings settings, Map<String, Object> device, Map<String, Object> model,
            Double audioSeconds) {
        this.target = "app:" + (settings.serial != null && !settings.serial.isEmpty()
                ? settings.serial : "local");
        this.device = device;
        this.model = model;
        this.audioSeconds = audioSeconds;
        Map<String, Object> c = new LinkedHashMap<String, Object>();
        c.put("threads", (long) settings.threads);
        c.put("warmup", (long) settings.warmup);
        c.put("iterations", (long) settings.iterations);
        c.put("repeats", (long) settings.repeats);
        c.put("seed", 0L);
        c.put("pinned_cpus", null);
        c.put("audio_seconds", audioSeconds);
        c.put("cooldown_timeout_s", 0.0);
        c.put("input_file", settings.inputPath);
        c.put("runner", PRODUCER + " " + VERSION);
        this.config = c;
        // an app cannot pin its own threads to the big cores (no taskset for an app process)
        flags.add("not_pinned");
    }

    /** One repeat: its latencies (ms), load time (ms) and what the probes read (null: unknown). */
    public void addRepeat(List<Double> latenciesMs, double loadMs, Long pssKb, Long peakRssKb,
            Integer threadsUsed, Integer thermalBefore, Integer thermalAfter,
            List<Long> cpufreqBefore, List<Long> cpufreqAfter) {
        if (latenciesMs.isEmpty()) {
            throw new IllegalArgumentException("a repeat needs at least one latency");
        }
        Map<String, Object> r = new LinkedHashMap<String, Object>();
        r.put("index", (long) repeats.size());
        r.put("latencies_ms", new ArrayList<Double>(latenciesMs));
        r.put("stats", LatencyStats.summarize(latenciesMs).toMap());
        r.put("load_ms", loadMs);
        r.put("peak_rss_kb", peakRssKb);
        r.put("pss_kb", pssKb);
        r.put("threads_used", threadsUsed == null ? null : (long) (int) threadsUsed);
        r.put("thermal_before", thermalBefore == null ? null : (long) (int) thermalBefore);
        r.put("thermal_after", thermalAfter == null ? null : (long) (int) thermalAfter);
        r.put("cooldown_wait_s", 0.0);
        r.put("cpufreq_before_khz", cpufreqBefore);
        r.put("cpufreq_after_khz", cpufreqAfter);
        r.put("raw_path", null);
        repeats.add(r);
        if (thermalBefore != null && thermalBefore > 1) {
            flags.add("hot_at_start");
        }
    }

    public void addError(String message) {
        errors.add(message);
    }

    public void addFlag(String flag) {
        flags.add(flag);
    }

    public int repeatCount() {
        return repeats.size();
    }

    public String status() {
        if (errors.isEmpty()) {
            return "ok";
        }
        return repeats.isEmpty() ? "failed" : "partial";
    }

    /** The document, created at {@code createdUtc} (ISO 8601 seconds, e.g. 2026-01-31T12:00:00Z). */
    @SuppressWarnings("unchecked")
    public Map<String, Object> toMap(String createdUtc) {
        Map<String, Object> metrics = new LinkedHashMap<String, Object>();
        for (String k : METRIC_KEYS) {
            metrics.put(k, null);
        }
        Map<String, Object> replication = new LinkedHashMap<String, Object>();
        replication.put("metric", "p50");
        replication.put("spread", null);
        replication.put("threshold", LatencyStats.REPLICATION_THRESHOLD);
        replication.put("ok", null);
        TreeSet<String> allFlags = new TreeSet<String>(flags);
        if (!repeats.isEmpty()) {
            List<Double> pooled = new ArrayList<Double>();
            double[] loads = new double[repeats.size()];
            double[] p50s = new double[repeats.size()];
            Long pss = null;
            Long rss = null;
            for (int i = 0; i < repeats.size(); i++) {
                Map<String, Object> r = repeats.get(i);
                pooled.addAll((List<Double>) r.get("latencies_ms"));
                loads[i] = (Double) r.get("load_ms");
                p50s[i] = (Double) ((Map<String, Object>) r.get("stats")).get("p50");
                pss = max(pss, (Long) r.get("pss_kb"));
                rss = max(rss, (Long) r.get("peak_rss_kb"));
            }
            LatencyStats s = LatencyStats.summarize(pooled);
            metrics.put("avg_inference_latency(ms)", s.mean);
            metrics.put("trimmean_inference_latency(ms)", s.trimmedMean);
            metrics.put("model_load_time(ms)", LatencyStats.median(loads));
            metrics.put("ram_pss_usage(mb)", pss == null ? null : pss / 1024.0);
            metrics.put("min_inference_latency(ms)", s.min);
            metrics.put("p50_inference_latency(ms)", s.p50);
            metrics.put("p90_inference_latency(ms)", s.p90);
            metrics.put("max_inference_latency(ms)", s.max);
            metrics.put("std_inference_latency(ms)", s.std);
            metrics.put("peak_rss(mb)", rss == null ? null : rss / 1024.0);
            if (audioSeconds != null && audioSeconds > 0) {
                metrics.put("rtf", LatencyStats.realTimeFactor(s.p50, audioSeconds));
            }
            if (p50s.length >= 2) {
                double spread = LatencyStats.replicationSpread(p50s);
                replication.put("spread", spread);
                replication.put("ok", spread <= LatencyStats.REPLICATION_THRESHOLD);
                if (spread > LatencyStats.REPLICATION_THRESHOLD) {
                    allFlags.add("replication_spread_above_threshold");
                }
            }
        }
        Map<String, Object> producer = new LinkedHashMap<String, Object>();
        producer.put("name", PRODUCER);
        producer.put("version", VERSION);
        Map<String, Object> doc = new LinkedHashMap<String, Object>();
        doc.put("schema", "device_bench/bench_result");
        doc.put("schema_version", 1L);
        doc.put("created_utc", createdUtc);
        doc.put("producer", producer);
        doc.put("status", status());
        doc.put("target", target);
        doc.put("device", device);
        doc.put("model", model);
        doc.put("config", config);
        doc.put("metrics", metrics);
        doc.put("repeats", repeats);
        doc.put("replication", replication);
        doc.put("flags", new ArrayList<String>(allFlags));
        doc.put("errors", new ArrayList<String>(errors));
        return doc;
    }

    private static Long max(Long a, Long b) {
        if (a == null) {
            return b;
        }
        return b == null ? a : Math.max(a, b);
    }

    /** Now, as the schema's {@code created_utc} wants it. */
    public static String utcNow() {
        SimpleDateFormat f = new SimpleDateFormat("yyyy-MM-dd'T'HH:mm:ss'Z'", Locale.ROOT);
        f.setTimeZone(TimeZone.getTimeZone("UTC"));
        return f.format(new Date());
    }

    /** The {@code model} block of a program file: name (stem), path, size, sha256. */
    public static Map<String, Object> modelBlock(File pte) throws CoreException {
        Map<String, Object> m = new LinkedHashMap<String, Object>();
        String name = pte.getName();
        m.put("name", name.endsWith(".pte") ? name.substring(0, name.length() - 4) : name);
        m.put("path", pte.getAbsolutePath());
        m.put("size_bytes", pte.length());
        m.put("sha256", sha256(pte));
        return m;
    }

    /** Hex SHA-256 of a file. */
    public static String sha256(File file) throws CoreException {
        MessageDigest md;
        try {
            md = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new CoreException("no SHA-256 on this platform");
        }
        InputStream in = null;
        try {
            in = new FileInputStream(file);
            byte[] buf = new byte[1 << 16];
            int n;
            while ((n = in.read(buf)) > 0) {
                md.update(buf, 0, n);
            }
        } catch (IOException e) {
            throw new CoreException(file + ": cannot read (" + e.getMessage() + ")");
        } finally {
            if (in != null) {
                try {
                    in.close();
                } catch (IOException ignored) {
                    // read-only stream: nothing to recover
                }
            }
        }
        StringBuilder sb = new StringBuilder();
        for (byte x : md.digest()) {
            sb.append(Character.forDigit((x >> 4) & 0xF, 16)).append(Character.forDigit(x & 0xF, 16));
        }
        return sb.toString();
    }

    /** Write JSON to {@code file} through a temporary file and a rename: readers never see half. */
    public static void writeAtomically(File file, String json) throws IOException {
        File dir = file.getAbsoluteFile().getParentFile();
        if (dir != null && !dir.isDirectory() && !dir.mkdirs()) {
            throw new IOException("cannot create " + dir);
        }
        File tmp = new File(file.getPath() + ".part");
        OutputStream out = new FileOutputStream(tmp);
        try {
            out.write(json.getBytes(StandardCharsets.UTF_8));
        } finally {
            out.close();
        }
        if (!tmp.renameTo(file)) {
            tmp.delete();
            throw new IOException("cannot rename " + tmp + " to " + file);
        }
    }
}
