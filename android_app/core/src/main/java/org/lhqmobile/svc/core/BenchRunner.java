package org.lhqmobile.svc.core;

import java.util.ArrayList;
import java.util.List;

/**
 * The benchmark protocol of the app, the same as the native runner's
 * ({@code device_bench/runner/et_bench_runner.cpp}) in one process: for each repeat, load the
 * program (timed: {@code load_ms}), run {@code warmup} untimed forward calls, then time
 * {@code iterations} calls one by one with a monotonic clock, then read memory, then release the
 * program. An error stops the run and is recorded, so the result says {@code partial} or
 * {@code failed} instead of the app crashing.
 *
 * <p>The platform parts are interfaces so that the protocol is tested on the JVM: the Android
 * layer loads with ExecuTorch's {@code Module} and probes with {@code Debug} / {@code PowerManager}.
 */
public final class BenchRunner {
    /** A loaded program. */
    public interface Program {
        void forward() throws CoreException;

        void close();
    }

    /** Loads the program (the time this takes is the load time). */
    public interface Loader {
        Program load() throws CoreException;
    }

    /** What the platform can read between calls; any may return null. */
    public interface Probe {
        Long pssKb();

        Long peakRssKb();

        Integer thermalStatus();

        List<Long> cpuFreqKhz();
    }

    /** Monotonic nanoseconds. */
    public interface Clock {
        long nanoTime();
    }

    public static final Clock SYSTEM_CLOCK = new Clock() {
        @Override
        public long nanoTime() {
            return System.nanoTime();
        }
    };

    /** Told after each repeat (for the screen). */
    public interface Listener {
        void onRepeat(int done, int total, LatencyStats stats);
    }

    private BenchRunner() {}

    /** Run every repeat of {@code settings} into {@code report}; returns it. */
    public static BenchReport run(BenchSettings settings, Loader loader, Probe probe, Clock clock,
            BenchReport report, Listener listener) {
        for (int i = 0; i < settings.repeats; i++) {
            Integer thermalBefore = probe.thermalStatus();
            List<Long> freqBefore = probe.cpuFreqKhz();
            Program program = null;
            List<Double> latencies = new ArrayList<Double>();
            double loadMs;
            Long pss;
            Long rss;
            try {
                long t0 = clock.nanoTime();
                program = loader.load();
                loadMs = (clock.nanoTime() - t0) / 1e6;
                for (int w = 0; w < settings.warmup; w++) {
                    program.forward();
                }
                for (int it = 0; it < settings.iterations; it++) {
                    long t = clock.nanoTime();
                    program.forward();
                    latencies.add((clock.nanoTime() - t) / 1e6);
                }
                pss = probe.pssKb();
                rss = probe.peakRssKb();
            } catch (CoreException | RuntimeException e) {
                String what = e.getMessage() != null ? e.getMessage() : e.getClass().getName();
                report.addError("repeat " + i + ": " + what);
                return report;
            } finally {
                if (program != null) {
                    program.close();
                }
            }
            report.addRepeat(latencies, loadMs, pss, rss,
                    settings.threads > 0 ? settings.threads : null, thermalBefore,
                    probe.thermalStatus(), freqBefore, probe.cpuFreqKhz());
            if (listener != null) {
                listener.onRepeat(i + 1, settings.repeats, LatencyStats.summarize(latencies));
            }
        }
        return report;
    }
}
