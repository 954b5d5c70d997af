package org.lhqmobile.svc.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.Test;

/**
 * The result document: aggregation equal to device_bench.result.build_result, the protocol of
 * BenchRunner, the intent extras. Writes {@code out.dir/java_result.json}, which the Python test
 * (tests/app/test_java_core.py) validates with device_bench.schema_check.
 */
public class BenchReportTest {
    static Map<String, Object> device() {
        return DeviceFacts.deviceBlock("TESTSERIAL", "SM-S928B", "samsung", "Snapdragon 8 Gen 3",
                "SM8650", "arm64-v8a", "14", DeviceFacts.longs(2265600, 2265600, 3148800),
                0, 87);
    }

    static Map<String, Object> model() {
        Map<String, Object> m = new LinkedHashMap<String, Object>();
        m.put("name", "demo-student_xnnpack_int8");
        m.put("path", "/data/local/tmp/device_bench_app/demo-student_xnnpack_int8.pte");
        m.put("size_bytes", 10953216L);
        m.put("sha256", "2c64c77e3074f1bd076a497996aa18971afda81d86ddeeaec318e23cb0257b7d");
        return m;
    }

    static BenchSettings settings(Object... kv) throws CoreException {
        Map<String, Object> extras = new HashMap<String, Object>();
        extras.put("model_path", "/data/local/tmp/device_bench_app/m.pte");
        for (int i = 0; i < kv.length; i += 2) {
            extras.put((String) kv[i], kv[i + 1]);
        }
        return BenchSettings.fromExtras(extras);
    }

    @Test
    @SuppressWarnings("unchecked")
    public void aggregatesAsBuildResultAndWritesAValidDocument() throws Exception {
        Map<String, Object> agg = Vectors.obj(Vectors.obj(Vectors.manifest("timing")).get("aggregate"));
        BenchSettings s = settings("threads", 4, "repeats", 3, "serial", "TESTSERIAL");
        BenchReport r = new BenchReport(s, device(), model(), Json.getDouble(agg, "audio_seconds"));
        for (Object o : Vectors.list(agg.get("repeats"))) {
            Map<String, Object> rep = Vectors.obj(o);
            List<Double> lat = new ArrayList<Double>();
            for (double x : Vectors.doubles(rep.get("latencies_ms"))) {
                lat.add(x);
            }
            Long pss = rep.get("pss_kb") == null ? null : Json.getLong(rep, "pss_kb");
            r.addRepeat(lat, Json.getDouble(rep, "load_ms"), pss, Json.getLong(rep, "peak_rss_kb"),
                    4, 0, 1, DeviceFacts.longs(1800000, 1800000, 2400000), null);
        }
        Map<String, Object> doc = r.toMap(BenchReport.utcNow());
        Map<String, Object> metrics = (Map<String, Object>) doc.get("metrics");
        Map<String, Object> expected = Vectors.obj(agg.get("metrics"));
        assertEquals(expected.keySet(), metrics.keySet());
        for (String k : expected.keySet()) {
            Object e = expected.get(k);
            if (e == null) {
                assertNull(k, metrics.get(k));
            } else {
                assertEquals(k, ((Number) e).doubleValue(), ((Number) metrics.get(k)).doubleValue(), 0.0);
            }
        }
        Map<String, Object> repl = (Map<String, Object>) doc.get("replication");
        Map<String, Object> erepl = Vectors.obj(agg.get("replication"));
        assertEquals(Json.getDouble(erepl, "spread"), (Double) repl.get("spread"), 0.0);
        assertEquals(erepl.get("ok"), repl.get("ok"));
        assertEquals("ok", doc.get("status"));
        assertEquals("app:TESTSERIAL", doc.get("target"));
        assertTrue(((List<String>) doc.get("flags")).contains("not_pinned"));
        String json = Json.writePretty(doc);
        assertEquals(doc.get("metrics"), Json.parseObject(json).get("metrics"));
        BenchReport.writeAtomically(new File(Vectors.outDir(), "java_result.json"), json);
    }

    @Test
    public void statusFollowsErrorsAndRepeats() throws Exception {
        BenchReport r = new BenchReport(settings(), device(), model(), null);
        r.addError("could not load");
        assertEquals("failed", r.status());
        assertEquals(Arrays.asList("could not load"), r.toMap("2026-01-01T00:00:00Z").get("errors"));
        BenchReport p = new BenchReport(settings(), device(), model(), null);
        p.addRepeat(Arrays.asList(1.0, 2.0), 5.0, null, null, null, null, null, null, null);
        p.addError("repeat 1: out of memory");
        assertEquals("partial", p.status());
    }

    @Test
    public void runnerFollowsTheProtocol() throws Exception {
        final long[] now = {0};
        final int[] forwards = {0};
        final List<String> events = new ArrayList<String>();
        BenchRunner.Clock clock = new BenchRunner.Clock() {
            @Override
            public long nanoTime() {
                return now[0];
            }
        };
        BenchRunner.Loader loader = new BenchRunner.Loader() {
            @Override
            public BenchRunner.Program load() {
                now[0] += 40_000_000L; // 40 ms to load
                events.add("load");
                return new BenchRunner.Program() {
                    @Override
                    public void forward() {
                        forwards[0]++;
                        now[0] += 1_000_000L * (10 + forwards[0] % 3); // 10, 11, 12 ms
                    }

                    @Override
                    public void close() {
                        events.add("close");
                    }
                };
            }
        };
        BenchRunner.Probe probe = new BenchRunner.Probe() {
            @Override
            public Long pssKb() {
                return 2048L;
            }

            @Override
            public Long peakRssKb() {
                return 4096L;
            }

            @Override
            public Integer thermalStatus() {
                return 0;
            }

            @Override
            public List<Long> cpuFreqKhz() {
                return DeviceFacts.longs(1000, 2000);
            }
        };
        BenchSettings s = settings("warmup", 2, "iterations", 6, "repeats", 2, "threads", 0);
        BenchReport r = BenchRunner.run(s, loader, probe, clock,
                new BenchReport(s, device(), model(), 1.0), null);
        assertEquals(Arrays.asList("load", "close", "load", "close"), events);
        assertEquals(2 * (2 + 6), forwards[0]);
        Map<String, Object> doc = r.toMap("2026-01-01T00:00:00Z");
        @SuppressWarnings("unchecked")
        Map<String, Object> metrics = (Map<String, Object>) doc.get("metrics");
        assertEquals(40.0, (Double) metrics.get("model_load_time(ms)"), 1e-9);
        assertEquals(10.0, (Double) metrics.get("min_inference_latency(ms)"), 1e-9);
        assertEquals(2.0, (Double) metrics.get("ram_pss_usage(mb)"), 0.0);
        assertEquals(4.0, (Double) metrics.get("peak_rss(mb)"), 0.0);
        assertEquals("ok", doc.get("status"));
        // a failing program: the error is recorded, nothing is thrown
        BenchReport failed = BenchRunner.run(s, new BenchRunner.Loader() {
            @Override
            public BenchRunner.Program load() throws CoreException {
                throw new CoreException("m.pte: not a loadable ExecuTorch program");
            }
        }, probe, clock, new BenchReport(s, device(), model(), null), null);
        assertEquals("failed", failed.status());
    }

    @Test
    public void extrasAreCheckedAllAtOnce() throws Exception {
        BenchSettings d = settings();
        assertEquals(3, d.warmup);
        assertEquals(20, d.iterations);
        assertEquals(1, d.repeats);
        assertEquals(1, d.threads);
        assertEquals(BenchSettings.DEFAULT_RESULT, d.resultName);
        Map<String, Object> bad = new HashMap<String, Object>();
        bad.put("model_path", "model.onnx");
        bad.put("iterations", 0);
        bad.put("warmup", "many");
        bad.put("result_name", "../x.json");
        try {
            BenchSettings.fromExtras(bad);
            fail();
        } catch (CoreException e) {
            String m = e.getMessage();
            assertTrue(m, m.contains("model_path=model.onnx") && m.contains("iterations=0")
                    && m.contains("warmup=many") && m.contains("result_name=../x.json"));
        }
        assertEquals(BenchSettings.DEFAULT_RESULT, BenchSettings.safeResultName("../x.json"));
        assertEquals("r1.json", BenchSettings.safeResultName("r1.json"));
    }
}
