package org.lhqmobile.svc.core;

import static org.junit.Assert.assertTrue;

import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.List;
import java.util.Map;

/**
 * The shared test vectors written by {@code android_app/tools/make_vectors.py}: their folder is
 * the system property {@code vectors.dir}; Java outputs for the Python side go to {@code out.dir}.
 */
final class Vectors {
    private Vectors() {}

    static File dir(String sub) {
        String root = System.getProperty("vectors.dir");
        assertTrue("run with -Dvectors.dir=DIR (make app-test does)", root != null);
        File d = new File(root, sub);
        assertTrue("no vectors in " + d + ": run android_app/tools/make_vectors.py", d.isDirectory());
        return d;
    }

    static File outDir() {
        String out = System.getProperty("out.dir");
        File d = new File(out != null ? out : System.getProperty("java.io.tmpdir"));
        d.mkdirs();
        return d;
    }

    static String text(File f) throws IOException {
        return new String(Files.readAllBytes(f.toPath()), StandardCharsets.UTF_8);
    }

    static Object manifest(String sub) throws IOException, CoreException {
        return Json.parse(text(new File(dir(sub), "manifest.json")));
    }

    static float[] f32(File f) throws IOException {
        byte[] raw = Files.readAllBytes(f.toPath());
        float[] out = new float[raw.length / 4];
        ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(out);
        return out;
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> obj(Object o) {
        return (Map<String, Object>) o;
    }

    @SuppressWarnings("unchecked")
    static List<Object> list(Object o) {
        return (List<Object>) o;
    }

    static double[] doubles(Object o) {
        List<Object> l = list(o);
        double[] out = new double[l.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = ((Number) l.get(i)).doubleValue();
        }
        return out;
    }

    static double maxAbsDiff(float[] a, float[] b, int from, int to) {
        double m = 0;
        for (int i = from; i < to; i++) {
            m = Math.max(m, Math.abs((double) a[i] - b[i]));
        }
        return m;
    }
}
