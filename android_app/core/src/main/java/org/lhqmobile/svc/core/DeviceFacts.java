package org.lhqmobile.svc.core;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * What the phone says about itself, read as files (sysfs, procfs) so it works on the JVM too:
 * each core's maximum and current frequency, clusters of cores with the same maximum
 * (big.LITTLE, slowest first, as {@code device_bench.adb.parse_clusters}), and the process's
 * peak resident memory ({@code VmHWM} of {@code /proc/self/status}). Files the phone does not
 * let an app read give null, never an error.
 */
public final class DeviceFacts {
    public static final File CPU_ROOT = new File("/sys/devices/system/cpu");
    public static final File PROC_STATUS = new File("/proc/self/status");

    private DeviceFacts() {}

    /** Per-CPU values of {@code cpuN/cpufreq/<file>} (null where unreadable); empty when none. */
    public static List<Long> cpuFreqKhz(File cpuRoot, String file) {
        String[] names = cpuRoot.list();
        TreeMap<Integer, Long> byCpu = new TreeMap<Integer, Long>();
        if (names != null) {
            for (String n : names) {
                if (n.matches("cpu[0-9]+")) {
                    int cpu = Integer.parseInt(n.substring(3));
                    byCpu.put(cpu, readLong(new File(cpuRoot, n + "/cpufreq/" + file)));
                }
            }
        }
        List<Long> out = new ArrayList<Long>();
        if (byCpu.isEmpty()) {
            return out;
        }
        for (int i = 0; i <= byCpu.lastKey(); i++) {
            out.add(byCpu.get(i));
        }
        boolean any = false;
        for (Long v : out) {
            any |= v != null;
        }
        return any ? out : new ArrayList<Long>();
    }

    /** Clusters: CPUs with the same max frequency, slowest first ({@code cpus}, {@code max_khz}). */
    public static List<Map<String, Object>> clusters(List<Long> cpuMaxKhz) {
        TreeMap<Long, List<Long>> groups = new TreeMap<Long, List<Long>>();
        for (int cpu = 0; cpu < cpuMaxKhz.size(); cpu++) {
            Long khz = cpuMaxKhz.get(cpu);
            if (khz != null) {
                if (!groups.containsKey(khz)) {
                    groups.put(khz, new ArrayList<Long>());
                }
                groups.get(khz).add((long) cpu);
            }
        }
        List<Map<String, Object>> out = new ArrayList<Map<String, Object>>();
        for (Map.Entry<Long, List<Long>> e : groups.entrySet()) {
            Map<String, Object> c = new LinkedHashMap<String, Object>();
            c.put("cpus", e.getValue());
            c.put("max_khz", e.getKey());
            out.add(c);
        }
        return out;
    }

    /** {@code VmHWM} (kB) from the text of {@code /proc/<pid>/status}; null when absent. */
    public static Long peakRssKb(String procStatus) {
        for (String line : procStatus.split("\n")) {
            if (line.startsWith("VmHWM:")) {
                String[] parts = line.substring(6).trim().split("\\s+");
                try {
                    return Long.parseLong(parts[0]);
                } catch (NumberFormatException e) {
                    return null;
                }
            }
        }
        return null;
    }

    /** {@link #peakRssKb(String)} of this process; null when procfs is not readable. */
    public static Long peakRssKb() {
        try {
            return peakRssKb(new String(Files.readAllBytes(PROC_STATUS.toPath()),
                    StandardCharsets.UTF_8));
        } catch (IOException | SecurityException e) {
            return null;
        }
    }

    static Long readLong(File f) {
        try {
            String s = new String(Files.readAllBytes(f.toPath()), StandardCharsets.UTF_8).trim();
            return Long.parseLong(s.split("\\s+")[0]);
        } catch (IOException | SecurityException | NumberFormatException e) {
            return null;
        }
    }

    /** A {@code device} block of bench_result.v1 from what the Android layer read. */
    public static Map<String, Object> deviceBlock(String serial, String model, String manufacturer,
            String soc, String socModel, String abi, String androidVersion, List<Long> cpuMaxKhz,
            Integer thermalStatus, Integer batteryLevel) {
        Map<String, Object> d = new LinkedHashMap<String, Object>();
        d.put("kind", "android");
        d.put("serial", serial);
        d.put("model", model == null ? "" : model);
        d.put("manufacturer", manufacturer == null ? "" : manufacturer);
        d.put("soc", soc == null || soc.isEmpty() ? (socModel == null ? "" : socModel) : soc);
        d.put("soc_model", socModel == null ? "" : socModel);
        d.put("abi", abi == null ? "" : abi);
        d.put("android_version", androidVersion);
        d.put("cpu_max_khz", new ArrayList<Long>(cpuMaxKhz));
        d.put("clusters", clusters(cpuMaxKhz));
        d.put("thermal_status", thermalStatus == null ? null : (long) (int) thermalStatus);
        d.put("battery_level", batteryLevel == null ? null : (long) (int) batteryLevel);
        return d;
    }

    static List<Long> longs(long... values) {
        List<Long> out = new ArrayList<Long>();
        for (long v : values) {
            out.add(v);
        }
        return out;
    }
}
