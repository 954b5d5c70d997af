package org.lhqmobile.svc;

import java.io.File;
import java.util.LinkedHashMap;
import java.util.Map;
import org.lhqmobile.svc.core.ChunkedConverter;
import org.lhqmobile.svc.core.CoreException;
import org.lhqmobile.svc.core.ModelInfo;
import org.pytorch.executorch.EValue;
import org.pytorch.executorch.Module;
import org.pytorch.executorch.Tensor;

/**
 * One exported whole-pipeline program loaded with ExecuTorch's Java API: its metadata (constant
 * methods) and its forward {@code (audio (1, T) f32, speaker (1,) i64, shift (1,) f32) -> audio
 * (1, T)} as the core's {@link ChunkedConverter.ChunkModel}. Every ExecuTorch failure (a missing
 * native library, a file that is not a program, a failed call) becomes a {@link CoreException}
 * with a sentence for the screen.
 */
final class EtProgram implements ChunkedConverter.ChunkModel {
    /** Keys read one by one when a program has no get_metadata_json. */
    private static final String[] KEYS = {
        "family", "component", "model_name", "precision", "sample_rate", "chunk_frames",
        "speakers", "speaker_names", "speaker_f0_hz", "dynamic_length",
    };

    private final Module module;
    private final File file;

    private EtProgram(Module module, File file) {
        this.module = module;
        this.file = file;
    }

    /** Load {@code file} (LOAD_MODE_FILE, as the native runner) and its forward method. */
    static EtProgram load(File file, int threads) throws CoreException {
        if (!file.isFile()) {
            throw new CoreException(file + ": no such program file");
        }
        if (!file.canRead()) {
            throw new CoreException(file + ": not readable by the app (push it to "
                    + "/data/local/tmp/lhq_svc/ or import it)");
        }
        Module m;
        try {
            m = Module.load(file.getAbsolutePath(), Module.LOAD_MODE_FILE, threads);
            m.loadMethod("forward");
        } catch (RuntimeException | UnsatisfiedLinkError e) {
            throw new CoreException(file.getName() + ": not a loadable ExecuTorch program ("
                    + e.getMessage() + ")");
        }
        return new EtProgram(m, file);
    }

    File file() {
        return file;
    }

    /** The program's metadata: get_metadata_json, else the get_KEY methods one by one. */
    ModelInfo info() throws CoreException {
        String source = file.getName();
        try {
            EValue[] out = module.execute("get_metadata_json");
            if (out.length > 0 && out[0].isString()) {
                return ModelInfo.fromJson(out[0].toStr(), source);
            }
        } catch (RuntimeException e) {
            // older programs: fall back to the per-key constant methods below
        }
        Map<String, Object> meta = new LinkedHashMap<String, Object>();
        for (String key : KEYS) {
            try {
                EValue[] out = module.execute("get_" + key);
                if (out.length > 0) {
                    Object v = value(out[0]);
                    if (v != null) {
                        meta.put(key, v);
                    }
                }
            } catch (RuntimeException e) {
                // this program has no such method: leave the key out
            }
        }
        if (meta.isEmpty()) {
            throw new CoreException(source + ": the program carries no metadata methods "
                    + "(get_metadata_json); export it with `compress export` or `compress run`");
        }
        return ModelInfo.fromMap(meta, source);
    }

    private static Object value(EValue v) {
        if (v.isString()) {
            return v.toStr();
        }
        if (v.isInt()) {
            return v.toInt();
        }
        if (v.isDouble()) {
            return v.toDouble();
        }
        if (v.isBool()) {
            return v.toBool();
        }
        return null;
    }

    @Override
    public float[] run(float[] chunk, int speaker, float shift) throws CoreException {
        Tensor audio = Tensor.fromBlob(chunk, new long[] {1, chunk.length});
        Tensor spk = Tensor.fromBlob(new long[] {speaker}, new long[] {1});
        Tensor sh = Tensor.fromBlob(new float[] {shift}, new long[] {1});
        try {
            EValue[] out = module.forward(EValue.from(audio), EValue.from(spk), EValue.from(sh));
            if (out.length == 0 || !out[0].isTensor()) {
                throw new CoreException(file.getName() + ": forward returned no tensor");
            }
            return out[0].toTensor().getDataAsFloatArray();
        } catch (RuntimeException e) {
            throw new CoreException(file.getName() + ": forward failed (" + e.getMessage() + ")");
        }
    }

    void close() {
        module.destroy();
    }
}
