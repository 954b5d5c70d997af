package org.lhqmobile.svc.core;

import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;

/**
 * The three inputs of the whole-pipeline program, {@code (audio (1, T) f32, speaker (1,) i64,
 * shift (1,) f32)}: read from device_bench's raw input file (each tensor's little-endian bytes,
 * contiguous, in input order: {@code device_bench.protocol.write_input_file}), or made up as a
 * test tone when the benchmark gets no input file.
 */
public final class SvcInputs {
    public final float[] audio;
    public final int speaker;
    public final float shift;

    public SvcInputs(float[] audio, int speaker, float shift) {
        this.audio = audio;
        this.speaker = speaker;
        this.shift = shift;
    }

    /** Parse the raw bytes for a program of {@code chunkFrames} samples per call. */
    public static SvcInputs fromRaw(byte[] raw, int chunkFrames, String name) throws CoreException {
        long expected = 4L * chunkFrames + 8 + 4;
        if (raw.length != expected) {
            throw new CoreException(name + ": " + raw.length + " bytes; expected " + expected
                    + " (audio float32 x " + chunkFrames + ", speaker int64, shift float32)");
        }
        ByteBuffer b = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN);
        float[] audio = new float[chunkFrames];
        b.asFloatBuffer().get(audio);
        long speaker = b.getLong(4 * chunkFrames);
        float shift = b.getFloat(4 * chunkFrames + 8);
        if (speaker < 0 || speaker > Integer.MAX_VALUE) {
            throw new CoreException(name + ": speaker index " + speaker + " out of range");
        }
        return new SvcInputs(audio, (int) speaker, shift);
    }

    public static SvcInputs fromFile(File file, int chunkFrames) throws CoreException {
        try {
            return fromRaw(Files.readAllBytes(file.toPath()), chunkFrames, file.getPath());
        } catch (IOException e) {
            throw new CoreException(file + ": cannot read the input file (" + e.getMessage() + ")");
        }
    }

    /** The raw bytes of these inputs (the inverse of {@link #fromRaw}). */
    public byte[] toRaw() {
        ByteBuffer b = ByteBuffer.allocate(4 * audio.length + 12).order(ByteOrder.LITTLE_ENDIAN);
        for (float x : audio) {
            b.putFloat(x);
        }
        b.putLong(speaker).putFloat(shift);
        return b.array();
    }

    /**
     * A sung-like test input: a 220 Hz tone with three harmonics and a 5 Hz vibrato at -12 dBFS,
     * speaker 0, shift 0. Deterministic, so runs on different phones feed the same numbers.
     */
    public static SvcInputs testTone(int chunkFrames, int sampleRate) {
        float[] x = new float[chunkFrames];
        double phase = 0.0;
        for (int t = 0; t < chunkFrames; t++) {
            double f = 220.0 * (1.0 + 0.01 * Math.sin(2 * Math.PI * 5.0 * t / sampleRate));
            phase += 2 * Math.PI * f / sampleRate;
            x[t] = (float) (0.25 * (Math.sin(phase) + 0.5 * Math.sin(2 * phase)
                    + 0.25 * Math.sin(3 * phase)) / 1.75);
        }
        return new SvcInputs(x, 0, 0f);
    }
}
