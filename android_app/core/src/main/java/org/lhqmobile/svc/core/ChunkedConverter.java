package org.lhqmobile.svc.core;

import java.util.ArrayList;
import java.util.List;

/**
 * Converts audio of any length with a fixed-chunk program, exactly as the Python
 * {@code compress.svc_adapter.ChunkedSVC.convert_long} does (the shared test vectors hold both to
 * within 1e-6):
 *
 * <ul>
 *   <li>audio no longer than a chunk: one call on the zero-padded chunk, output cut to the input;
 *   <li>longer: chunks of {@code chunk} samples starting every {@code chunk - chunk/4} samples
 *       (they overlap by a quarter chunk), the last one zero-padded; chunk starts run while
 *       {@code start < total - overlap};
 *   <li>each later chunk is joined by a linear crossfade of {@code round(fade_seconds * rate)}
 *       samples (at least 1, at most the overlap) centred in the overlap: the first
 *       {@code lead = (overlap - fade) / 2} samples of the later chunk are dropped, the fade
 *       weights are {@code i / fade} for {@code i = 0 .. fade-1}, and after the fade the later
 *       chunk's samples replace the earlier one's.
 * </ul>
 *
 * <p>Arithmetic is in float in the order numpy evaluates it on float32 arrays, so the output is
 * the same to the last bit for the same program outputs.
 */
public final class ChunkedConverter {
    /** One call of the program: {@code chunk} samples in (already zero-padded), samples out. */
    public interface ChunkModel {
        float[] run(float[] chunk, int speaker, float shift) throws CoreException;
    }

    /** Told after each chunk; return normally to go on. */
    public interface Progress {
        void onChunk(int done, int total);
    }

    /** Polled before each chunk; when it answers true the conversion stops. */
    public interface CancelFlag {
        boolean isCancelled();
    }

    /** Thrown by {@link #convert} when the cancel flag was raised. */
    public static final class CancelledException extends CoreException {
        private static final long serialVersionUID = 1L;

        public CancelledException(int done, int total) {
            super("conversion cancelled after " + done + " of " + total + " chunks");
        }
    }

    /** The converted audio and the time each program call took. */
    public static final class Result {
        public final float[] audio;
        public final List<Double> chunkMillis;

        Result(float[] audio, List<Double> chunkMillis) {
            this.audio = audio;
            this.chunkMillis = chunkMillis;
        }

        /** Sum of the program calls' times (ms). */
        public double totalMillis() {
            double s = 0;
            for (double ms : chunkMillis) {
                s += ms;
            }
            return s;
        }
    }

    public static final double DEFAULT_FADE_SECONDS = 0.01;

    private final ChunkModel model;
    private final int chunk;
    private final int sampleRate;
    private final double fadeSeconds;

    public ChunkedConverter(ChunkModel model, int chunkSamples, int sampleRate, double fadeSeconds) {
        if (chunkSamples < 4) {
            throw new IllegalArgumentException("chunk_samples must be >= 4, got " + chunkSamples);
        }
        if (!(fadeSeconds > 0)) {
            throw new IllegalArgumentException("fade_seconds must be > 0, got " + fadeSeconds);
        }
        this.model = model;
        this.chunk = chunkSamples;
        this.sampleRate = sampleRate;
        this.fadeSeconds = fadeSeconds;
    }

    public ChunkedConverter(ChunkModel model, int chunkSamples, int sampleRate) {
        this(model, chunkSamples, sampleRate, DEFAULT_FADE_SECONDS);
    }

    public int chunkSamples() {
        return chunk;
    }

    /** How many program calls converting {@code total} samples takes. */
    public int calls(int total) {
        if (total <= chunk) {
            return 1;
        }
        int overlap = chunk / 4;
        int step = chunk - overlap;
        return (total - overlap + step - 1) / step;
    }

    /** Samples of the crossfade. */
    public int fadeSamples() {
        int overlap = chunk / 4;
        return Math.min(overlap, Math.max(1, (int) Math.rint(fadeSeconds * sampleRate)));
    }

    private float[] runChunk(float[] wav, int start, int speaker, float shift, List<Double> times)
            throws CoreException {
        float[] x = new float[chunk];
        int n = Math.max(0, Math.min(wav.length - start, chunk));
        System.arraycopy(wav, start, x, 0, n);
        long t0 = System.nanoTime();
        float[] y = model.run(x, speaker, shift);
        times.add((System.nanoTime() - t0) / 1e6);
        if (y == null || y.length < n) {
            throw new CoreException("the program returned " + (y == null ? "nothing" : y.length
                    + " samples") + " for a chunk of " + chunk + "; expected " + chunk);
        }
        float[] out = new float[n];
        System.arraycopy(y, 0, out, 0, n);
        return out;
    }

    /** Convert {@code wav} (mono, at the program's rate); progress and cancel may be null. */
    public Result convert(float[] wav, int speaker, float shift, Progress progress,
            CancelFlag cancel) throws CoreException {
        int total = wav.length;
        List<Double> times = new ArrayList<Double>();
        if (total <= chunk) {
            if (cancel != null && cancel.isCancelled()) {
                throw new CancelledException(0, 1);
            }
            float[] y = runChunk(wav, 0, speaker, shift, times);
            if (progress != null) {
                progress.onChunk(1, 1);
            }
            return new Result(y, times);
        }
        int overlap = chunk / 4;
        int step = chunk - overlap;
        int fadeN = fadeSamples();
        int lead = (overlap - fadeN) / 2;
        float[] fade = new float[fadeN];
        for (int i = 0; i < fadeN; i++) {
            fade[i] = (float) (i * (1.0 / fadeN));
        }
        float[] out = new float[total];
        int calls = calls(total);
        int i = 0;
        for (int s = 0; s < total - overlap; s += step, i++) {
            if (cancel != null && cancel.isCancelled()) {
                throw new CancelledException(i, calls);
            }
            float[] y = runChunk(wav, s, speaker, shift, times);
            if (progress != null) {
                progress.onChunk(i + 1, calls);
            }
            if (i == 0) {
                System.arraycopy(y, 0, out, 0, y.length);
                continue;
            }
            int a = s + lead;
            for (int j = 0; j < fadeN; j++) {
                float f = fade[j];
                out[a + j] = out[a + j] * (1f - f) + y[lead + j] * f;
            }
            System.arraycopy(y, lead + fadeN, out, a + fadeN, y.length - lead - fadeN);
        }
        return new Result(out, times);
    }
}
