package org.lhqmobile.svc;

import android.app.Activity;
import android.content.Context;
import android.os.BatteryManager;
import android.os.Build;
import android.os.Bundle;
import android.os.Debug;
import android.os.PowerManager;
import android.widget.TextView;
import java.io.File;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.lhqmobile.svc.core.BenchReport;
import org.lhqmobile.svc.core.BenchRunner;
import org.lhqmobile.svc.core.BenchSettings;
import org.lhqmobile.svc.core.CoreException;
import org.lhqmobile.svc.core.DeviceFacts;
import org.lhqmobile.svc.core.Json;
import org.lhqmobile.svc.core.LatencyStats;
import org.lhqmobile.svc.core.ModelInfo;
import org.lhqmobile.svc.core.SvcInputs;

/**
 * The benchmark harness, started over adb by {@code compress bench --mode app}:
 *
 * <pre>
 * am start -W -S -n org.lhqmobile.svc/org.lhqmobile.svc.BenchmarkActivity \
 *   --es model_path /data/local/tmp/device_bench_app/m.pte --ei warmup 3 --ei iterations 20 \
 *   --ei repeats 3 --ei threads 4 [--es input_path F] [--ef audio_seconds S] \
 *   --es result_name r.json [--es serial S]
 * </pre>
 *
 * It runs the core's {@link BenchRunner} protocol on a background thread (load and time the
 * program with ExecuTorch's Module, as the native runner does) and writes a bench_result.v1
 * document to {@code <external files>/bench/<result_name>} through a rename, so the bench never
 * pulls half a file. Every failure is written into that document (status failed) and shown on
 * screen; nothing here may crash the app.
 */
public final class BenchmarkActivity extends Activity {
    private TextView log;

    @Override
    protected void onCreate(Bundle savedInstanceState) {
        super.onCreate(savedInstanceState);
        setContentView(R.layout.activity_benchmark);
        log = (TextView) findViewById(R.id.bench_log);
        final Map<String, Object> extras = new HashMap<String, Object>();
        Bundle b = getIntent().getExtras();
        if (b != null) {
            for (String key : b.keySet()) {
                extras.put(key, b.get(key));
            }
        }
        final File resultDir = new File(getExternalFilesDir(null), "bench");
        new Thread(new Runnable() {
            @Override
            public void run() {
                benchmark(extras, resultDir);
            }
        }, "benchmark").start();
    }

    private void say(final String line) {
        runOnUiThread(new Runnable() {
            @Override
            public void run() {
                log.append(line + "\n");
            }
        });
    }

    private void benchmark(Map<String, Object> extras, File resultDir) {
        String name = BenchSettings.safeResultName(extras.get("result_name"));
        BenchSettings settings = null;
        BenchReport report = null;
        try {
            settings = BenchSettings.fromExtras(extras);
            name = settings.resultName;
            say("model " + settings.modelPath);
            File model = new File(settings.modelPath);
            Map<String, Object> modelBlock = BenchReport.modelBlock(model);
            // the metadata gives the inputs' length and the audio seconds per call (untimed)
            EtProgram probe = EtProgram.load(model, settings.threads);
            ModelInfo info;
            try {
                info = probe.info();
            } finally {
                probe.close();
            }
            final SvcInputs inputs = settings.inputPath != null
                    ? SvcInputs.fromFile(new File(settings.inputPath), info.chunkFrames)
                    : SvcInputs.testTone(info.chunkFrames, info.sampleRate);
            double seconds = settings.audioSeconds != null ? settings.audioSeconds
                    : info.chunkSeconds();
            report = new BenchReport(settings, device(settings.serial), modelBlock, seconds);
            final BenchSettings s = settings;
            final File modelFile = model;
            BenchRunner.run(settings, new BenchRunner.Loader() {
                @Override
                public BenchRunner.Program load() throws CoreException {
                    final EtProgram p = EtProgram.load(modelFile, s.threads);
                    return new BenchRunner.Program() {
                        @Override
                        public void forward() throws CoreException {
                            p.run(inputs.audio, inputs.speaker, inputs.shift);
                        }

                        @Override
                        public void close() {
                            p.close();
                        }
                    };
                }
            }, new AndroidProbe(this), BenchRunner.SYSTEM_CLOCK, report,
                    new BenchRunner.Listener() {
                        @Override
                        public void onRepeat(int done, int total, LatencyStats st) {
                            say(String.format(Locale.ROOT, "repeat %d/%d: p50 %.2f ms, min %.2f ms",
                                    done, total, st.p50, st.min));
                        }
                    });
        } catch (CoreException e) {
            say("error: " + e.getMessage());
            report = failed(settings, extras, e.getMessage(), report);
        } catch (Throwable e) { // a bug or a missing native library: still a result, no crash
            String msg = e.getClass().getSimpleName() + ": " + e.getMessage();
            say("error: " + msg);
            report = failed(settings, extras, msg, report);
        }
        if (report == null) {
            return;
        }
        try {
            File out = new File(resultDir, name);
            BenchReport.writeAtomically(out, Json.writePretty(report.toMap(BenchReport.utcNow())));
            say("status " + report.status() + "; wrote " + out);
        } catch (Exception e) {
            say("could not write the result: " + e.getMessage());
        }
    }

    /** A document for a run that could not start, or the partial one with the error added. */
    private BenchReport failed(BenchSettings settings, Map<String, Object> extras, String message,
            BenchReport partial) {
        if (partial != null) {
            partial.addError(message);
            return partial;
        }
        try {
            BenchSettings s = settings;
            if (s == null) { // the extras themselves were wrong: keep what can be kept
                Map<String, Object> minimal = new HashMap<String, Object>();
                Object path = extras.get("model_path");
                minimal.put("model_path", path instanceof String && ((String) path).endsWith(".pte")
                        ? path : "unknown.pte");
                s = BenchSettings.fromExtras(minimal);
            }
            Map<String, Object> model = new LinkedHashMap<String, Object>();
            File f = new File(s.modelPath);
            String n = f.getName();
            model.put("name", n.endsWith(".pte") ? n.substring(0, n.length() - 4) : n);
            model.put("path", f.getPath());
            model.put("size_bytes", f.isFile() ? f.length() : 0L);
            // the schema wants a sha256; zeros say the file could not be read
            model.put("sha256", "0000000000000000000000000000000000000000000000000000000000000000");
            try {
                model.put("sha256", BenchReport.sha256(f));
            } catch (CoreException ignored) {
                // unreadable or missing: keep the zeros
            }
            BenchReport r = new BenchReport(s, device(s.serial), model, null);
            r.addError(message);
            return r;
        } catch (CoreException e) {
            say("error: " + e.getMessage());
            return null;
        }
    }

    private Map<String, Object> device(String serial) {
        String soc = Build.HARDWARE;
        String socModel = Build.BOARD;
        if (Build.VERSION.SDK_INT >= 31) {
            soc = Build.SOC_MANUFACTURER + " " + Build.SOC_MODEL;
            socModel = Build.SOC_MODEL;
        }
        List<Long> maxKhz = DeviceFacts.cpuFreqKhz(DeviceFacts.CPU_ROOT, "cpuinfo_max_freq");
        Integer battery = null;
        BatteryManager bm = (BatteryManager) getSystemService(Context.BATTERY_SERVICE);
        if (bm != null) {
            int level = bm.getIntProperty(BatteryManager.BATTERY_PROPERTY_CAPACITY);
            battery = level >= 0 && level <= 100 ? level : null;
        }
        return DeviceFacts.deviceBlock(serial, Build.MODEL, Build.MANUFACTURER, soc, socModel,
                Build.SUPPORTED_ABIS.length > 0 ? Build.SUPPORTED_ABIS[0] : "",
                Build.VERSION.RELEASE, maxKhz, new AndroidProbe(this).thermalStatus(), battery);
    }

    /** Memory, thermal status and CPU frequencies as an app can read them. */
    static final class AndroidProbe implements BenchRunner.Probe {
        private final PowerManager power;

        AndroidProbe(Context context) {
            power = (PowerManager) context.getSystemService(Context.POWER_SERVICE);
        }

        @Override
        public Long pssKb() {
            return Debug.getPss();
        }

        @Override
        public Long peakRssKb() {
            return DeviceFacts.peakRssKb();
        }

        @Override
        public Integer thermalStatus() {
            if (Build.VERSION.SDK_INT >= 29 && power != null) {
                return power.getCurrentThermalStatus();
            }
            return null;
        }

        @Override
        public List<Long> cpuFreqKhz() {
            List<Long> f = DeviceFacts.cpuFreqKhz(DeviceFacts.CPU_ROOT, "scaling_cur_freq");
            return f.isEmpty() ? null : f;
        }
    }
}
