package org.lhqmobile.svc.core;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/**
 * The automatic key ("auto" pitch): the source's median F0 moved to the target singer's, by whole
 * semitones, as {@code models/lhq_svc/pitch.py} does on the desktop:
 *
 * <pre>shift = round(12 · log2(target median F0 / source median F0)), clamped to ±36</pre>
 *
 * (rounded half to even, as Python's {@code round}). The target's median comes from the program's
 * {@code speaker_f0_hz} metadata.
 *
 * <p>The source's median F0 comes from {@link #estimateF0}, a YIN estimator (de Cheveigné and
 * Kawahara, 2002) — the desktop uses DIO, which the phone does not have; both give the median of
 * voiced frames, and a whole-semitone shift forgives the small difference between them. Frames:
 * 40 ms windows every 10 ms; the difference function over lags for 50..1100 Hz, its cumulative
 * mean normalised form, the first dip below 0.15 (else the global minimum) refined by a parabola.
 * A frame is voiced when that minimum is below 0.25 and its RMS is within 40 dB of the loudest
 * frame's. Fewer than {@link #MIN_VOICED_SECONDS} voiced seconds is an error, as on the desktop.
 * Signals longer than {@link #MAX_FRAMES} hops are analysed with a longer hop (at most
 * {@code MAX_FRAMES} frames, evenly spread), which bounds the cost on a phone to about a second
 * whatever the length; the median of so many frames does not move.
 */
public final class Pitch {
    public static final int MAX_SHIFT = 36;
    public static final double MIN_VOICED_SECONDS = 0.2;
    public static final double FMIN = 50.0;
    public static final double FMAX = 1100.0;
    public static final double WINDOW_SECONDS = 0.04;
    public static final double HOP_SECONDS = 0.01;
    public static final int MAX_FRAMES = 3000;
    static final double DIP_THRESHOLD = 0.15;
    static final double VOICED_THRESHOLD = 0.25;
    static final double ENERGY_RANGE_DB = 40.0;

    private Pitch() {}

    /** F0 track: {@code hz[i]} of frame i (0 when unvoiced) and the frame rate. */
    public static final class Track {
        public final double[] hz;
        public final double framesPerSecond;

        Track(double[] hz, double framesPerSecond) {
            this.hz = hz;
            this.framesPerSecond = framesPerSecond;
        }

        /** The voiced frames' F0 values. */
        public double[] voiced() {
            List<Double> v = new ArrayList<Double>();
            for (double f : hz) {
                if (f > 0) {
                    v.add(f);
                }
            }
            return LatencyStats.toArray(v);
        }

        public double voicedSeconds() {
            return voiced().length / framesPerSecond;
        }
    }

    /** YIN F0 of a mono signal (see the class comment). */
    public static Track estimateF0(float[] x, int sampleRate) {
        int window = (int) Math.round(WINDOW_SECONDS * sampleRate);
        int hop = Math.max(1, (int) Math.round(HOP_SECONDS * sampleRate));
        hop = Math.max(hop, (x.length - window) / MAX_FRAMES + 1);
        int tauMin = Math.max(2, (int) Math.floor(sampleRate / FMAX));
        int tauMax = Math.min(window - 1, (int) Math.ceil(sampleRate / FMIN));
        int w = window - tauMax; // samples compared at each lag
        int frames = x.length < window ? 0 : 1 + (x.length - window) / hop;
        double[] hz = new double[frames];
        double[] rms = new double[frames];
        double[] d = new double[tauMax + 1];
        double loudest = 0.0;
        for (int f = 0; f < frames; f++) {
            int s = f * hop;
            double e = 0.0;
            for (int j = 0; j < window; j++) {
                e += (double) x[s + j] * x[s + j];
            }
            rms[f] = Math.sqrt(e / window);
            loudest = Math.max(loudest, rms[f]);
        }
        double floor = loudest * Math.pow(10.0, -ENERGY_RANGE_DB / 20.0);
        for (int f = 0; f < frames; f++) {
            if (rms[f] <= floor || rms[f] < 1e-5) {
                continue;
            }
            int s = f * hop;
            for (int tau = 1; tau <= tauMax; tau++) {
                double acc = 0.0;
                for (int j = 0; j < w; j++) {
                    double diff = x[s + j] - x[s + j + tau];
                    acc += diff * diff;
                }
                d[tau] = acc;
            }
            // cumulative mean normalised difference, d'(0) = 1
            double running = 0.0;
            double[] cmnd = new double[tauMax + 1];
            cmnd[0] = 1.0;
            for (int tau = 1; tau <= tauMax; tau++) {
                running += d[tau];
                cmnd[tau] = running > 0 ? d[tau] * tau / running : 1.0;
            }
            int best = -1;
            for (int tau = tauMin; tau <= tauMax; tau++) {
                if (cmnd[tau] < DIP_THRESHOLD) {
                    while (tau + 1 <= tauMax && cmnd[tau + 1] < cmnd[tau]) {
                        tau++;
                    }
                    best = tau;
                    break;
                }
            }
            if (best < 0) {
                best = tauMin;
                for (int tau = tauMin; tau <= tauMax; tau++) {
                    if (cmnd[tau] < cmnd[best]) {
                        best = tau;
                    }
                }
            }
            if (cmnd[best] >= VOICED_THRESHOLD) {
                continue;
            }
            double period = best;
            if (best > 1 && best < tauMax) {
                double a = cmnd[best - 1];
                double b = cmnd[best];
                double c = cmnd[best + 1];
                double den = a - 2 * b + c;
                if (den > 0) {
                    period = best + 0.5 * (a - c) / den;
                }
            }
            hz[f] = sampleRate / period;
        }
        return new Track(hz, sampleRate / (double) hop);
    }

    /**
     * Median F0 (Hz) of the voiced frames of {@code x}; an error when fewer than
     * {@link #MIN_VOICED_SECONDS} are voiced ({@code name} labels the message).
     */
    public static double sourceMedianF0(float[] x, int sampleRate, String name) throws CoreException {
        Track t = estimateF0(x, sampleRate);
        double[] v = t.voiced();
        double seconds = v.length / t.framesPerSecond;
        if (seconds < MIN_VOICED_SECONDS) {
            throw new CoreException(String.format(Locale.ROOT, "%s: only %.2f s of voiced audio, "
                    + "too little to choose a key; choose a pitch shift in semitones instead of "
                    + "auto", name, seconds));
        }
        Arrays.sort(v);
        return LatencyStats.median(v);
    }

    /** Whole semitones moving {@code sourceHz} to {@code targetHz}, clamped to ±36. */
    public static int chooseShift(double sourceHz, double targetHz) throws CoreException {
        if (!(sourceHz > 0 && targetHz > 0)) {
            throw new CoreException("F0 medians must be > 0, got " + sourceHz + ", " + targetHz);
        }
        double semis = 12.0 * (Math.log(targetHz / sourceHz) / Math.log(2.0));
        int s = (int) Math.rint(semis);
        return Math.max(-MAX_SHIFT, Math.min(MAX_SHIFT, s));
    }

    /** The sentence the app shows: what auto chose and why. */
    public static String describe(int semitones, double sourceHz, double targetHz, String singer) {
        return String.format(Locale.ROOT, "pitch auto: source median F0 %.0f Hz, %s's %.0f Hz -> "
                + "shift %+d semitones", sourceHz, singer, targetHz, semitones);
    }
}
