package org.lhqmobile.svc.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.Test;

/** The Java chunking and crossfade against Python's ChunkedSVC on the shared vectors. */
public class ChunkedConverterTest {
    /** The stand-in program of make_vectors.py, operation for operation in float. */
    static final class StandIn implements ChunkedConverter.ChunkModel {
        int calls;

        @Override
        public float[] run(float[] x, int speaker, float shift) {
            calls++;
            int n = x.length;
            float spk = 0.001f * (float) speaker;
            float sh = 0.01f * shift;
            float[] y = new float[n];
            for (int t = 0; t < n; t++) {
                float prev = t == 0 ? 0f : x[t - 1];
                float pos = (float) t / (float) n;
                y[t] = (0.5f * x[t] + 0.25f * prev) + (spk + sh * pos);
            }
            return y;
        }
    }

    @Test
    public void matchesPythonChunkedSvcWithin1e6() throws Exception {
        File dir = Vectors.dir("chunk");
        List<Object> cases = Vectors.list(Vectors.manifest("chunk"));
        assertTrue(cases.size() >= 5);
        for (Object o : cases) {
            Map<String, Object> c = Vectors.obj(o);
            String name = (String) c.get("name");
            float[] x = Vectors.f32(new File(dir, (String) c.get("input")));
            float[] expected = Vectors.f32(new File(dir, (String) c.get("output")));
            StandIn model = new StandIn();
            ChunkedConverter conv = new ChunkedConverter(model, (int) Json.getLong(c, "chunk"),
                    (int) Json.getLong(c, "sample_rate"), Json.getDouble(c, "fade_seconds"));
            ChunkedConverter.Result r = conv.convert(x, (int) Json.getLong(c, "speaker"),
                    (float) Json.getDouble(c, "shift"), null, null);
            assertEquals(name + ": length", expected.length, r.audio.length);
            double err = Vectors.maxAbsDiff(expected, r.audio, 0, expected.length);
            assertTrue(name + ": max abs difference " + err, err <= 1e-6);
            assertEquals(name + ": program calls", Json.getLong(c, "calls"), model.calls);
            assertEquals(name + ": calls()", model.calls, conv.calls(x.length));
            assertEquals(name + ": timings", model.calls, r.chunkMillis.size());
        }
    }

    @Test
    public void reportsProgressAndStopsWhenCancelled() throws Exception {
        StandIn model = new StandIn();
        ChunkedConverter conv = new ChunkedConverter(model, 400, 8000);
        final List<String> seen = new ArrayList<String>();
        float[] x = new float[4000];
        conv.convert(x, 0, 0f, new ChunkedConverter.Progress() {
            @Override
            public void onChunk(int done, int total) {
                seen.add(done + "/" + total);
            }
        }, null);
        assertEquals(conv.calls(4000), seen.size());
        assertEquals(seen.size() + "/" + seen.size(), seen.get(seen.size() - 1));
        final int[] polls = {0};
        try {
            conv.convert(x, 0, 0f, null, new ChunkedConverter.CancelFlag() {
                @Override
                public boolean isCancelled() {
                    return ++polls[0] > 3;
                }
            });
            fail("expected a cancellation");
        } catch (ChunkedConverter.CancelledException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("after 3 of " + conv.calls(4000)));
        }
    }

    @Test
    public void aShortOutputIsAClearError() {
        ChunkedConverter conv = new ChunkedConverter(new ChunkedConverter.ChunkModel() {
            @Override
            public float[] run(float[] chunk, int speaker, float shift) {
                return new float[10];
            }
        }, 400, 8000);
        try {
            conv.convert(new float[1000], 0, 0f, null, null);
            fail("expected an error");
        } catch (CoreException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("returned 10 samples"));
        }
    }

    @Test
    public void fadeAndCallCountsFollowTheRules() {
        ChunkedConverter conv = new ChunkedConverter(new StandIn(), 16000, 16000);
        assertEquals(160, conv.fadeSamples());
        assertEquals(1, conv.calls(16000));
        assertEquals(2, conv.calls(16001));
        assertEquals(2, conv.calls(28000));
        assertEquals(3, conv.calls(28001));
        // the fade never exceeds the overlap
        assertEquals(2, new ChunkedConverter(new StandIn(), 8, 16000).fadeSamples());
    }
}
