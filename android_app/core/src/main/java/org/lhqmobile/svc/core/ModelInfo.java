package org.lhqmobile.svc.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;

/**
 * What the app needs to know about an exported program, read from the metadata baked into the
 * {@code .pte} ({@code export/metadata.py}): the JSON of its {@code get_metadata_json} constant
 * method, or the same keys read one by one from {@code get_<key>} methods.
 *
 * <p>{@link #fromJson} / {@link #fromMap} check what {@code compress convert --model X.pte}
 * checks ({@code compress.svc_adapter.load_pte_svc}): a whole LHQ-SVC pipeline
 * ({@code family} lhq-svc, {@code component} pipeline), a fixed chunk ({@code dynamic_length}
 * false), {@code chunk_frames}, {@code sample_rate} and {@code speakers} present. Singers are
 * named by {@code speaker_names} (a JSON list inside a string); programs exported before names
 * were recorded get "0", "1", ... by index. {@code speaker_f0_hz} (also a JSON list in a string)
 * gives each singer's median F0 for the automatic key.
 */
public final class ModelInfo {
    public static final String FAMILY = "lhq-svc";
    public static final String COMPONENT = "pipeline";

    public final String modelName;
    public final String precision;
    public final int sampleRate;
    public final int chunkFrames;
    public final List<String> speakerNames;
    /** Median F0 (Hz) per singer in index order, or null when the program has none. */
    public final double[] speakerF0Hz;
    public final Map<String, Object> raw;

    private ModelInfo(String modelName, String precision, int sampleRate, int chunkFrames,
            List<String> speakerNames, double[] speakerF0Hz, Map<String, Object> raw) {
        this.modelName = modelName;
        this.precision = precision;
        this.sampleRate = sampleRate;
        this.chunkFrames = chunkFrames;
        this.speakerNames = Collections.unmodifiableList(speakerNames);
        this.speakerF0Hz = speakerF0Hz;
        this.raw = raw;
    }

    /** Parse the text of {@code get_metadata_json}; {@code source} (a file name) labels errors. */
    public static ModelInfo fromJson(String json, String source) throws CoreException {
        Map<String, Object> obj;
        try {
            obj = Json.parseObject(json);
        } catch (CoreException e) {
            throw new CoreException(source + ": the metadata is not a JSON object (" + e.getMessage()
                    + ")");
        }
        return fromMap(obj, source);
    }

    /** Build from a metadata mapping (key -> Long / Double / String / Boolean). */
    public static ModelInfo fromMap(Map<String, Object> meta, String source) throws CoreException {
        Object family = meta.get("family");
        Object component = meta.get("component");
        if (!FAMILY.equals(family) || !COMPONENT.equals(component)) {
            throw new CoreException(source + ": holds " + (family == null ? "?" : family) + "/"
                    + (component == null ? "?" : component) + ", not a whole LHQ-SVC pipeline; "
                    + "use the *-student_<backend>_<precision>.pte of a compress run");
        }
        if (Boolean.TRUE.equals(meta.get("dynamic_length"))) {
            throw new CoreException(source + ": a dynamic-length program; the app expects a "
                    + "fixed chunk (export with --chunk-seconds)");
        }
        int chunk;
        int rate;
        int speakers;
        try {
            chunk = positiveInt(meta, "chunk_frames");
            rate = positiveInt(meta, "sample_rate");
            speakers = positiveInt(meta, "speakers");
        } catch (CoreException e) {
            throw new CoreException(source + ": metadata lacks chunk_frames / sample_rate / "
                    + "speakers (" + e.getMessage() + ")");
        }
        List<String> names = new ArrayList<String>();
        Object namesJson = meta.get("speaker_names");
        if (namesJson instanceof String && !((String) namesJson).isEmpty()) {
            Object parsed = Json.parse((String) namesJson);
            if (!(parsed instanceof List)) {
                throw new CoreException(source + ": speaker_names is not a JSON list");
            }
            for (Object n : (List<?>) parsed) {
                names.add(n instanceof Double && (Double) n == Math.rint((Double) n)
                        ? String.valueOf(((Double) n).longValue()) : String.valueOf(n));
            }
        }
        if (names.isEmpty()) {
            for (int i = 0; i < speakers; i++) {
                names.add(String.valueOf(i));
            }
        }
        double[] f0 = null;
        Object f0Json = meta.get("speaker_f0_hz");
        if (f0Json instanceof String && !((String) f0Json).isEmpty()) {
            Object parsed = Json.parse((String) f0Json);
            if (!(parsed instanceof List) || ((List<?>) parsed).size() != names.size()) {
                throw new CoreException(source + ": speaker_f0_hz is not a list of "
                        + names.size() + " numbers");
            }
            List<?> list = (List<?>) parsed;
            f0 = new double[list.size()];
            for (int i = 0; i < f0.length; i++) {
                if (!(list.get(i) instanceof Number)) {
                    throw new CoreException(source + ": speaker_f0_hz[" + i + "] is not a number");
                }
                f0[i] = ((Number) list.get(i)).doubleValue();
            }
        }
        String name = meta.get("model_name") instanceof String ? (String) meta.get("model_name") : "?";
        String precision = meta.get("precision") instanceof String
                ? (String) meta.get("precision") : "?";
        return new ModelInfo(name, precision, rate, chunk, names, f0, meta);
    }

    private static int positiveInt(Map<String, Object> meta, String key) throws CoreException {
        long v = Json.getLong(meta, key);
        if (v < 1 || v > Integer.MAX_VALUE) {
            throw new CoreException(key + " = " + v + ", expected a positive integer");
        }
        return (int) v;
    }

    /** Seconds of audio per program call. */
    public double chunkSeconds() {
        return chunkFrames / (double) sampleRate;
    }

    /** Index of singer {@code name}; an error listing the singers when unknown. */
    public int speakerIndex(String name) throws CoreException {
        int i = speakerNames.indexOf(name);
        if (i < 0) {
            throw new CoreException("unknown singer '" + name + "'; valid: "
                    + String.join(", ", speakerNames));
        }
        return i;
    }

    /** Whether the automatic key can be used (every singer has a median F0). */
    public boolean hasF0Stats() {
        return speakerF0Hz != null;
    }
}
