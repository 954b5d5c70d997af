package org.lhqmobile.svc.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.util.Map;
import java.util.Random;
import org.junit.Test;

/** The automatic key: the shift rule equals Python's, the F0 estimator finds known tones. */
public class PitchTest {
    static float[] tone(double f0, int rate, double seconds, double amp) {
        int n = (int) (seconds * rate);
        float[] x = new float[n];
        for (int t = 0; t < n; t++) {
            double ph = 2 * Math.PI * f0 * t / rate;
            x[t] = (float) (amp * (Math.sin(ph) + 0.5 * Math.sin(2 * ph) + 0.3 * Math.sin(3 * ph)));
        }
        return x;
    }

    @Test
    public void chooseShiftEqualsPython() throws Exception {
        Map<String, Object> m = Vectors.obj(Vectors.manifest("pitch"));
        int n = 0;
        for (Object o : Vectors.list(m.get("shifts"))) {
            Map<String, Object> c = Vectors.obj(o);
            assertEquals(c.toString(), Json.getLong(c, "shift"),
                    Pitch.chooseShift(Json.getDouble(c, "source_hz"), Json.getDouble(c, "target_hz")));
            n++;
        }
        assertTrue(n >= 40);
        assertEquals(36, Pitch.chooseShift(50, 1000));
        assertEquals(-36, Pitch.chooseShift(1000, 50));
        assertEquals(0, Pitch.chooseShift(200, 200));
        assertEquals(-12, Pitch.chooseShift(440, 220));
    }

    @Test
    public void yinFindsKnownTones() throws Exception {
        for (double f0 : new double[] {82.4, 110.0, 220.0, 440.0, 880.0}) {
            double med = Pitch.sourceMedianF0(tone(f0, 16000, 1.0, 0.2), 16000, "tone");
            assertEquals("tone " + f0, f0, med, f0 * 0.005);
        }
        double med = Pitch.sourceMedianF0(tone(196.0, 44100, 0.8, 0.3), 44100, "tone");
        assertEquals(196.0, med, 1.0);
        // a long signal: the frame count is capped, the answer stays
        Pitch.Track longTrack = Pitch.estimateF0(tone(261.6, 16000, 60.0, 0.2), 16000);
        assertTrue(longTrack.hz.length <= Pitch.MAX_FRAMES);
        assertEquals(60.0, longTrack.voicedSeconds(), 0.5);
        assertEquals(261.6, LatencyStats.median(longTrack.voiced()), 1.5);
    }

    @Test
    public void yinAgreesWithTheDesktopsDio() throws Exception {
        File dir = Vectors.dir("pitch");
        Map<String, Object> m = Vectors.obj(Vectors.manifest("pitch"));
        for (Object o : Vectors.list(m.get("tones"))) {
            Map<String, Object> c = Vectors.obj(o);
            float[] x = Vectors.f32(new File(dir, (String) c.get("file")));
            double mine = Pitch.sourceMedianF0(x, (int) Json.getLong(c, "sample_rate"), "t");
            double dio = Json.getDouble(c, "dio_median_hz");
            assertEquals(c.get("file") + " vs DIO " + dio, dio, mine, dio * 0.02);
            // the same shift towards a 300 Hz singer
            assertEquals(Pitch.chooseShift(dio, 300.0), Pitch.chooseShift(mine, 300.0));
        }
    }

    @Test
    public void silenceAndNoiseCannotChooseAKey() {
        try {
            Pitch.sourceMedianF0(new float[16000], 16000, "quiet.wav");
            fail();
        } catch (CoreException e) {
            assertTrue(e.getMessage(), e.getMessage().startsWith("quiet.wav: only 0.00 s of voiced"));
        }
        Random rng = new Random(1);
        float[] noise = new float[16000];
        for (int i = 0; i < noise.length; i++) {
            noise[i] = (float) (0.3 * rng.nextGaussian());
        }
        Pitch.Track t = Pitch.estimateF0(noise, 16000);
        assertTrue("noise voiced for " + t.voicedSeconds() + " s", t.voicedSeconds() < 0.2);
    }
}
