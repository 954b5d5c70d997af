package org.lhqmobile.svc.core;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Latency statistics as {@code device_bench/stats.py} computes them, operation for operation,
 * so the same samples give the same doubles (checked on the shared test vectors):
 *
 * <ul>
 *   <li>percentile q: linear interpolation between order statistics at {@code (n-1)·q/100};
 *   <li>trimmed mean: the middle 80 %, {@code floor(n·0.2/2 + 1e-9)} samples cut from each end
 *       (all kept when that would leave none), as ExecuTorch's {@code trimmean_inference_latency};
 *   <li>mean and population std by left-to-right sums; min, max.
 * </ul>
 */
public final class LatencyStats {
    /** MLPerf Mobile's replication rule: per-repeat p50s may differ by at most 5 %. */
    public static final double REPLICATION_THRESHOLD = 0.05;

    public final int n;
    public final double min;
    public final double p50;
    public final double p90;
    public final double mean;
    public final double trimmedMean;
    public final double std;
    public final double max;

    private LatencyStats(int n, double min, double p50, double p90, double mean,
            double trimmedMean, double std, double max) {
        this.n = n;
        this.min = min;
        this.p50 = p50;
        this.p90 = p90;
        this.mean = mean;
        this.trimmedMean = trimmedMean;
        this.std = std;
        this.max = max;
    }

    /** The q-th percentile (0..100) with linear interpolation. */
    public static double percentile(double[] values, double q) {
        if (values.length == 0) {
            throw new IllegalArgumentException("percentile of an empty sequence");
        }
        if (!(q >= 0.0 && q <= 100.0)) {
            throw new IllegalArgumentException("percentile q=" + q + "; expected 0..100");
        }
        double[] xs = values.clone();
        Arrays.sort(xs);
        double pos = (xs.length - 1) * q / 100.0;
        int lo = (int) Math.floor(pos);
        int hi = Math.min(lo + 1, xs.length - 1);
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo);
    }

    /** Mean of the middle {@code keep} fraction. */
    public static double trimmedMean(double[] values, double keep) {
        if (values.length == 0) {
            throw new IllegalArgumentException("trimmed mean of an empty sequence");
        }
        double[] xs = values.clone();
        Arrays.sort(xs);
        int cut = (int) Math.floor(xs.length * (1.0 - keep) / 2.0 + 1e-9);
        int from = 0;
        int to = xs.length;
        if (xs.length - 2 * cut > 0) {
            from = cut;
            to = xs.length - cut;
        }
        double s = 0.0;
        for (int i = from; i < to; i++) {
            s += xs[i];
        }
        return s / (to - from);
    }

    /** Statistics of one series of latencies (ms): finite, non-negative, at least one. */
    public static LatencyStats summarize(double[] latenciesMs) {
        if (latenciesMs.length == 0) {
            throw new IllegalArgumentException("no latencies to summarize");
        }
        double sum = 0.0;
        double min = Double.POSITIVE_INFINITY;
        double max = Double.NEGATIVE_INFINITY;
        for (double x : latenciesMs) {
            if (Double.isNaN(x) || Double.isInfinite(x) || x < 0) {
                throw new IllegalArgumentException("latencies must be finite and non-negative");
            }
            sum += x;
            min = Math.min(min, x);
            max = Math.max(max, x);
        }
        double mean = sum / latenciesMs.length;
        double ss = 0.0;
        for (double x : latenciesMs) {
            double d = x - mean;
            ss += d * d;
        }
        double std = Math.sqrt(ss / latenciesMs.length);
        return new LatencyStats(latenciesMs.length, min, percentile(latenciesMs, 50),
                percentile(latenciesMs, 90), mean, trimmedMean(latenciesMs, 0.8), std, max);
    }

    public static LatencyStats summarize(List<Double> latenciesMs) {
        return summarize(toArray(latenciesMs));
    }

    /** (max - min) / min of per-repeat values; 0 for fewer than two. */
    public static double replicationSpread(double[] values) {
        if (values.length < 2) {
            return 0.0;
        }
        double lo = Double.POSITIVE_INFINITY;
        double hi = Double.NEGATIVE_INFINITY;
        for (double v : values) {
            lo = Math.min(lo, v);
            hi = Math.max(hi, v);
        }
        if (lo <= 0) {
            throw new IllegalArgumentException("replication spread needs positive values");
        }
        return (hi - lo) / lo;
    }

    /** Real-time factor: processing time / audio duration (below 1 is faster than real time). */
    public static double realTimeFactor(double latencyMs, double audioSeconds) {
        if (!(audioSeconds > 0)) {
            throw new IllegalArgumentException("audio_seconds=" + audioSeconds + "; expected > 0");
        }
        return latencyMs / 1000.0 / audioSeconds;
    }

    /** Median as Python's {@code statistics.median}: the middle value, or the mean of two. */
    public static double median(double[] values) {
        if (values.length == 0) {
            throw new IllegalArgumentException("median of an empty sequence");
        }
        double[] xs = values.clone();
        Arrays.sort(xs);
        int m = xs.length / 2;
        return xs.length % 2 == 1 ? xs[m] : (xs[m - 1] + xs[m]) / 2.0;
    }

    static double[] toArray(List<Double> values) {
        double[] out = new double[values.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = values.get(i);
        }
        return out;
    }

    /** The {@code stats} object of a bench_result.v1 repeat (same keys as Python's). */
    public Map<String, Object> toMap() {
        Map<String, Object> m = new LinkedHashMap<String, Object>();
        m.put("n", (long) n);
        m.put("min", min);
        m.put("p50", p50);
        m.put("p90", p90);
        m.put("mean", mean);
        m.put("trimmed_mean", trimmedMean);
        m.put("std", std);
        m.put("max", max);
        return m;
    }
}
