package org.lhqmobile.svc.core;

import java.io.File;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

/**
 * Where the app looks for programs: its own files (models the user imported), its external
 * files folder (reachable with {@code adb push}), and the folders under {@code /data/local/tmp}
 * that {@code compress bench --mode app} and the README's {@code adb push} use. Folders that do
 * not exist or cannot be listed are skipped.
 */
public final class ModelFinder {
    /** Where {@code compress bench --mode app} pushes programs. */
    public static final String BENCH_DIR = "/data/local/tmp/device_bench_app";
    /** Where the README tells users to push a program by hand. */
    public static final String PUSH_DIR = "/data/local/tmp/lhq_svc";

    private ModelFinder() {}

    /** The standard folders after the app's own ones. */
    public static List<File> defaultFolders(File filesDir, File externalFilesDir) {
        List<File> out = new ArrayList<File>();
        if (filesDir != null) {
            out.add(filesDir);
        }
        if (externalFilesDir != null) {
            out.add(externalFilesDir);
        }
        out.add(new File(PUSH_DIR));
        out.add(new File(BENCH_DIR));
        return out;
    }

    /** Every {@code *.pte} directly inside {@code folders}, in folder order, names sorted. */
    public static List<File> find(List<File> folders) {
        Set<String> seen = new LinkedHashSet<String>();
        List<File> out = new ArrayList<File>();
        for (File dir : folders) {
            File[] files = dir.listFiles();
            if (files == null) {
                continue;
            }
            Arrays.sort(files);
            for (File f : files) {
                if (f.isFile() && f.getName().endsWith(".pte") && seen.add(canonical(f))) {
                    out.add(f);
                }
            }
        }
        return out;
    }

    private static String canonical(File f) {
        try {
            return f.getCanonicalPath();
        } catch (IOException e) {
            return f.getAbsolutePath();
        }
    }
}
