package org.lhqmobile.svc.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.util.Map;
import org.junit.Test;

/** The Java WAV reader and writer against models.audio (libsndfile) on the shared vectors. */
public class WavTest {
    private static Map<String, Object> manifest() throws Exception {
        return Vectors.obj(Vectors.manifest("wav"));
    }

    @Test
    public void readsEveryFormatAsLoadAudioDoes() throws Exception {
        File dir = Vectors.dir("wav");
        int checked = 0;
        for (Object o : Vectors.list(manifest().get("files"))) {
            Map<String, Object> f = Vectors.obj(o);
            String name = (String) f.get("file");
            Audio a = Wav.read(new File(dir, name));
            assertEquals(name, Json.getLong(f, "sample_rate"), a.sampleRate);
            assertEquals(name, Json.getLong(f, "channels"), a.channels());
            assertEquals(name, Json.getLong(f, "frames"), a.frames());
            float[] all = Vectors.f32(new File(dir, (String) f.get("all")));
            for (int c = 0; c < a.channels(); c++) {
                float[] expected = new float[a.frames()];
                System.arraycopy(all, c * a.frames(), expected, 0, a.frames());
                assertArrayEquals(name + " channel " + c, expected, a.samples[c], 0f);
            }
            float[] mono = Vectors.f32(new File(dir, (String) f.get("mono")));
            assertArrayEquals(name + " mono mix", mono, a.toMono(), 0f);
            checked++;
        }
        assertTrue(checked >= 9);
    }

    @Test
    public void refusesWhatIsNotAWav() throws Exception {
        File dir = Vectors.dir("wav");
        for (Object o : Vectors.list(manifest().get("refused"))) {
            Map<String, Object> f = Vectors.obj(o);
            try {
                Wav.read(new File(dir, (String) f.get("file")));
                fail(f.get("file") + " was read");
            } catch (CoreException e) {
                assertTrue(e.getMessage(), e.getMessage().contains((String) f.get("message")));
                assertTrue(e.getMessage(), e.getMessage().startsWith((String) f.get("file")));
            }
        }
    }

    @Test
    public void writesPcm16AsWriteWavDoes() throws Exception {
        File dir = Vectors.dir("wav");
        Map<String, Object> w = Vectors.obj(manifest().get("write"));
        float[] src = Vectors.f32(new File(dir, (String) w.get("source")));
        byte[] mine = Wav.encode(Audio.mono(src, 16000), Wav.FORMAT_PCM);
        Audio back = Wav.decode(mine, "mine");
        float[] python = Vectors.f32(new File(dir, (String) w.get("read_back")));
        assertArrayEquals(python, back.samples[0], 0f);
        Audio theirs = Wav.read(new File(dir, (String) w.get("file")));
        assertArrayEquals(theirs.samples[0], back.samples[0], 0f);
    }

    @Test
    public void floatRoundTripAndStreamedHeader() throws Exception {
        float[][] x = {{0.1f, -0.5f, 1.5f, 0f}, {0.25f, 0.75f, -1f, 1e-7f}};
        byte[] bytes = Wav.encode(new Audio(x, 44100), Wav.FORMAT_FLOAT);
        Audio a = Wav.decode(bytes, "f");
        assertArrayEquals(x[0], a.samples[0], 0f);
        assertArrayEquals(x[1], a.samples[1], 0f);
        // a streamed file: RIFF and data sizes unknown (0xFFFFFFFF) -> every frame present
        ByteBuffer b = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(4, -1);
        b.putInt(40, -1);
        assertEquals(4, Wav.decode(bytes, "s").frames());
        File tmp = File.createTempFile("wav", ".wav");
        try {
            Wav.write(new Audio(x, 44100), Wav.FORMAT_PCM, tmp);
            Audio p = Wav.read(tmp);
            assertEquals(2, p.channels());
            assertEquals(32767 / 32768f, p.samples[0][2], 0f); // 1.5 clipped to 1
            assertTrue(Files.size(tmp.toPath()) == 44 + 4 * 2 * 2);
        } finally {
            tmp.delete();
        }
    }

    @Test
    public void resamplesCloseToSoxr() throws Exception {
        File dir = Vectors.dir("wav");
        int checked = 0;
        for (Object o : Vectors.list(manifest().get("files"))) {
            Map<String, Object> f = Vectors.obj(o);
            String name = (String) f.get("file");
            if (name.startsWith("truncated")) {
                continue;
            }
            Audio a = Wav.read(new File(dir, name));
            float[] expected = Vectors.f32(new File(dir, (String) f.get("mono16k")));
            float[] mine = Resampler.resample(a.toMono(), a.sampleRate, 16000);
            assertEquals(name + " length", expected.length, mine.length);
            if (a.sampleRate == 16000) {
                assertArrayEquals(name, expected, mine, 0f);
                continue;
            }
            double inner = Vectors.maxAbsDiff(expected, mine, 200, mine.length - 200);
            double all = Vectors.maxAbsDiff(expected, mine, 0, mine.length);
            assertTrue(name + ": interior max error " + inner, inner < 5e-4);
            assertTrue(name + ": edge max error " + all, all < 0.05);
            checked++;
        }
        assertTrue(checked >= 5);
    }

    @Test
    public void checkRejectsSilenceAndNan() {
        try {
            Audio.mono(new float[1600], 16000).check("quiet.wav");
            fail();
        } catch (CoreException e) {
            assertTrue(e.getMessage(), e.getMessage().startsWith("quiet.wav: audio is silent"));
        }
        try {
            Audio.mono(new float[] {0.5f, Float.NaN}, 16000).check("nan.wav");
            fail();
        } catch (CoreException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("NaN"));
        }
    }
}
