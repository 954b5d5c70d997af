package org.lhqmobile.svc.core;

/**
 * Audio in memory: {@code samples[channel][frame]} as float in [-1, 1] and its sample rate. The
 * layout is the {@code (C, T)} of the Python side ({@code models.audio}).
 */
public final class Audio {
    /** Quieter than this (peak, dBFS) counts as silent, as {@code models.audio.SILENCE_DB}. */
    public static final double SILENCE_DB = -60.0;
    public static final int MIN_RATE = 1000;
    public static final int MAX_RATE = 384000;

    public final float[][] samples;
    public final int sampleRate;

    public Audio(float[][] samples, int sampleRate) {
        if (samples.length == 0) {
            throw new IllegalArgumentException("audio needs at least one channel");
        }
        for (float[] ch : samples) {
            if (ch.length != samples[0].length) {
                throw new IllegalArgumentException("channels of different lengths");
            }
        }
        this.samples = samples;
        this.sampleRate = sampleRate;
    }

    /** One channel. */
    public static Audio mono(float[] samples, int sampleRate) {
        return new Audio(new float[][] {samples}, sampleRate);
    }

    public int channels() {
        return samples.length;
    }

    public int frames() {
        return samples[0].length;
    }

    public double seconds() {
        return frames() / (double) sampleRate;
    }

    /**
     * The mean of the channels, computed in float as numpy's {@code wav.mean(axis=0)} of a
     * float32 array does for one or two channels (the sum, then one division): a stereo file
     * mixes to exactly the samples {@code models.audio.load_audio(..., channels=1)} gives.
     */
    public float[] toMono() {
        int c = channels();
        if (c == 1) {
            return samples[0].clone();
        }
        int n = frames();
        float[] out = new float[n];
        for (int t = 0; t < n; t++) {
            float s = 0f;
            for (int k = 0; k < c; k++) {
                s += samples[k][t];
            }
            out[t] = s / c;
        }
        return out;
    }

    /** Peak absolute sample over all channels. */
    public float peak() {
        float p = 0f;
        for (float[] ch : samples) {
            for (float x : ch) {
                p = Math.max(p, Math.abs(x));
            }
        }
        return p;
    }

    /**
     * Check the audio as {@code models.audio.check_audio} does: frames present, finite samples,
     * not silent (peak below {@link #SILENCE_DB}), a sample rate in range. {@code name} is the
     * file or source shown in the message.
     */
    public void check(String name) throws CoreException {
        if (frames() == 0) {
            throw new CoreException(name + ": audio has no frames");
        }
        if (sampleRate < MIN_RATE || sampleRate > MAX_RATE) {
            throw new CoreException(name + ": sample rate " + sampleRate + " Hz is outside ["
                    + MIN_RATE + ", " + MAX_RATE + "] Hz");
        }
        for (float[] ch : samples) {
            for (float x : ch) {
                if (Float.isNaN(x) || Float.isInfinite(x)) {
                    throw new CoreException(name + ": audio contains NaN or Inf samples");
                }
            }
        }
        double peakDb = 20.0 * Math.log10(Math.max(peak(), 1e-12));
        if (peakDb < SILENCE_DB) {
            throw new CoreException(String.format(java.util.Locale.ROOT,
                    "%s: audio is silent (peak %.1f dBFS < %.0f dBFS)", name, peakDb, SILENCE_DB));
        }
    }
}
