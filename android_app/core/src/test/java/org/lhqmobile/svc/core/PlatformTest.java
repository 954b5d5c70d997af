package org.lhqmobile.svc.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.Test;

/** Inputs file, sysfs / procfs reading, the model folders. */
public class PlatformTest {
    static File tempDir() throws IOException {
        return Files.createTempDirectory("core").toFile();
    }

    static void write(File f, String text) throws IOException {
        f.getParentFile().mkdirs();
        FileOutputStream out = new FileOutputStream(f);
        try {
            out.write(text.getBytes(StandardCharsets.UTF_8));
        } finally {
            out.close();
        }
    }

    @Test
    public void readsDeviceBenchInputFiles() throws Exception {
        File dir = Vectors.dir("inputs");
        Map<String, Object> m = Vectors.obj(Vectors.manifest("inputs"));
        int chunk = (int) Json.getLong(m, "chunk_frames");
        SvcInputs in = SvcInputs.fromFile(new File(dir, (String) m.get("file")), chunk);
        double[] expected = Json.getDoubles(m, "audio");
        for (int i = 0; i < chunk; i++) {
            assertEquals((float) expected[i], in.audio[i], 0f);
        }
        assertEquals(3, in.speaker);
        assertEquals(-2.5f, in.shift, 0f);
        assertArrayEquals(Files.readAllBytes(new File(dir, (String) m.get("file")).toPath()),
                in.toRaw());
        try {
            SvcInputs.fromFile(new File(dir, (String) m.get("file")), chunk + 1);
            fail();
        } catch (CoreException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("expected " + (4 * (chunk + 1) + 12)));
        }
        SvcInputs tone = SvcInputs.testTone(16000, 16000);
        assertArrayEquals(tone.audio, SvcInputs.testTone(16000, 16000).audio, 0f);
        assertTrue(Audio.mono(tone.audio, 16000).peak() < 0.3f);
    }

    @Test
    public void readsCpuFrequenciesAndMemory() throws Exception {
        File root = tempDir();
        long[] max = {1800000, 1800000, 2400000, 2400000, 3200000};
        for (int c = 0; c < max.length; c++) {
            write(new File(root, "cpu" + c + "/cpufreq/cpuinfo_max_freq"), max[c] + "\n");
        }
        write(new File(root, "cpufreq/policy0"), "not a cpu\n");
        List<Long> freqs = DeviceFacts.cpuFreqKhz(root, "cpuinfo_max_freq");
        assertEquals(DeviceFacts.longs(max), freqs);
        List<Map<String, Object>> clusters = DeviceFacts.clusters(freqs);
        assertEquals(3, clusters.size());
        assertEquals(Arrays.asList(0L, 1L), clusters.get(0).get("cpus"));
        assertEquals(3200000L, clusters.get(2).get("max_khz"));
        assertTrue(DeviceFacts.cpuFreqKhz(root, "scaling_cur_freq").isEmpty());
        assertEquals(Long.valueOf(61234), DeviceFacts.peakRssKb("Name:\tx\nVmHWM:\t   61234 kB\n"));
        assertNull(DeviceFacts.peakRssKb("Name:\tx\n"));
        Map<String, Object> d = DeviceFacts.deviceBlock(null, "Pixel 8", "Google", "", "Tensor G3",
                "arm64-v8a", "14", freqs, null, 50);
        assertEquals("Tensor G3", d.get("soc"));
        assertEquals(50L, d.get("battery_level"));
    }

    @Test
    public void findsProgramsInTheModelFolders() throws Exception {
        File a = tempDir();
        File b = tempDir();
        write(new File(a, "z.pte"), "x");
        write(new File(a, "a.pte"), "x");
        write(new File(a, "notes.txt"), "x");
        write(new File(b, "b.pte"), "x");
        List<File> found = ModelFinder.find(Arrays.asList(a, new File(a, "missing"), b, a));
        assertEquals(Arrays.asList("a.pte", "z.pte", "b.pte"),
                Arrays.asList(found.get(0).getName(), found.get(1).getName(), found.get(2).getName()));
        assertEquals(3, found.size());
        List<File> folders = ModelFinder.defaultFolders(a, null);
        assertEquals(new File(ModelFinder.BENCH_DIR), folders.get(folders.size() - 1));
        assertEquals(64, BenchReport.sha256(new File(a, "a.pte")).length());
        assertEquals("2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881",
                BenchReport.sha256(new File(a, "a.pte")));
    }
}
