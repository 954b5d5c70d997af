package org.lhqmobile.svc.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.fail;

import java.util.Map;
import org.junit.Test;

/** The Java statistics equal device_bench.stats' on the shared timing vectors (bit for bit). */
public class LatencyStatsTest {
    @Test
    public void summarizeEqualsDeviceBench() throws Exception {
        Map<String, Object> m = Vectors.obj(Vectors.manifest("timing"));
        int n = 0;
        for (Object o : Vectors.list(m.get("series"))) {
            Map<String, Object> c = Vectors.obj(o);
            String name = (String) c.get("name");
            LatencyStats s = LatencyStats.summarize(Vectors.doubles(c.get("latencies_ms")));
            Map<String, Object> e = Vectors.obj(c.get("stats"));
            assertEquals(name, Json.getLong(e, "n"), s.n);
            assertEquals(name + " min", Json.getDouble(e, "min"), s.min, 0.0);
            assertEquals(name + " p50", Json.getDouble(e, "p50"), s.p50, 0.0);
            assertEquals(name + " p90", Json.getDouble(e, "p90"), s.p90, 0.0);
            assertEquals(name + " mean", Json.getDouble(e, "mean"), s.mean, 0.0);
            assertEquals(name + " trimmed", Json.getDouble(e, "trimmed_mean"), s.trimmedMean, 0.0);
            assertEquals(name + " std", Json.getDouble(e, "std"), s.std, 0.0);
            assertEquals(name + " max", Json.getDouble(e, "max"), s.max, 0.0);
            assertEquals(name + " rtf", Json.getDouble(c, "rtf_1s"),
                    LatencyStats.realTimeFactor(s.p50, 1.0), 0.0);
            n++;
        }
        assertEquals(6, n);
        for (Object o : Vectors.list(m.get("spreads"))) {
            Map<String, Object> c = Vectors.obj(o);
            assertEquals(Json.getDouble(c, "spread"),
                    LatencyStats.replicationSpread(Vectors.doubles(c.get("values"))), 0.0);
        }
    }

    @Test
    public void badInputsAreRefused() {
        try {
            LatencyStats.summarize(new double[0]);
            fail();
        } catch (IllegalArgumentException expected) {
            // as device_bench: ValueError
        }
        try {
            LatencyStats.summarize(new double[] {1.0, -1.0});
            fail();
        } catch (IllegalArgumentException expected) {
            // negative latency
        }
        try {
            LatencyStats.realTimeFactor(10.0, 0.0);
            fail();
        } catch (IllegalArgumentException expected) {
            // no audio
        }
        assertEquals(2.5, LatencyStats.median(new double[] {4, 1, 2, 3}), 0.0);
        assertEquals(7.0, LatencyStats.percentile(new double[] {7}, 90), 0.0);
    }
}
