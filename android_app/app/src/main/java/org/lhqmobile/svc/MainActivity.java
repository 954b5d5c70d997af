package org.lhqmobile.svc;

import android.Manifest;
import android.app.Activity;
import android.content.ContentValues;
import android.content.Intent;
import android.content.pm.PackageManager;
import android.database.Cursor;
import android.media.AudioAttributes;
import android.media.AudioFormat;
import android.media.AudioRecord;
import android.media.AudioTrack;
import android.media.MediaRecorder;
import android.net.Uri;
import android.os.Build;
import android.os.Bundle;
import android.os.Environment;
import android.provider.MediaStore;
import android.provider.OpenableColumns;
import android.view.View;
import android.widget.AdapterView;
import android.widget.ArrayAdapter;
import android.widget.Button;
import android.widget.CheckBox;
import android.widget.ProgressBar;
import android.widget.SeekBar;
import android.widget.Spinner;
import android.widget.TextView;
import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicBoolean;
import org.lhqmobile.svc.core.Audio;
import org.lhqmobile.svc.core.ChunkedConverter;
import org.lhqmobile.svc.core.CoreException;
import org.lhqmobile.svc.core.LatencyStats;
import org.lhqmobile.svc.core.ModelFinder;
import org.lhqmobile.svc.core.ModelInfo;
import org.lhqmobile.svc.core.Pitch;
import org.lhqmobile.svc.core.Resampler;
import org.lhqmobile.svc.core.Wav;

/**
 * The converter screen: choose a program (the app's files, its external files folder, or
 * /data/local/tmp/lhq_svc and /data/local/tmp/device_bench_app), a target singer and a pitch
 * shift (or the automatic key), open a WAV file or record, convert chunk by chunk on a background
 * thread with the same chunking and crossfade as the desktop's {@code compress convert --model
 * X.pte}, play the original and the result, see the latency and real-time factor, and save the
 * result to shared storage. Every error is a line on screen; nothing here may crash the app.
 */
public final class MainActivity extends Activity {
    private static final int PICK_WAV = 1;
    private static final int PICK_MODEL = 2;
    private static final int PERMISSION_RECORD = 3;
    private static final int ERROR_COLOR = 0xFFB00020;
    private static final int INFO_COLOR = 0xFF202020;

    // the program and everything that calls it run on this one thread, in order
    private final ExecutorService worker = Executors.newSingleThreadExecutor();
    private final AtomicBoolean cancel = new AtomicBoolean();
    private final List<File> models = new ArrayList<File>();

    private Spinner modelSpinner;
    private Spinner singerSpinner;
    private TextView modelInfoText;
    private TextView pitchLabel;
    private TextView inputInfo;
    private TextView statsText;
    private TextView status;
    private CheckBox autoKey;
    private SeekBar pitch;
    private ProgressBar progress;
    private Button recordButton;
    private Button convertButton;
    private Button cancelButton;

    // set on the worker or recorder thread, read on the UI thread
    private volatile EtProgram program;
    private volatile ModelInfo info;
    private volatile Audio source;
    private volatile String sourceName = "input";
    private volatile float[] converted;
    private AudioTrack track;
    private volatile boolean recording;

    @Override
    protected void onCreate(Bundle savedInstanceState) {
        super.onCreate(savedInstanceState);
        setContentView(R.layout.activity_main);
        modelSpinner = (Spinner) findViewById(R.id.model_spinner);
        singerSpinner = (Spinner) findViewById(R.id.singer_spinner);
        modelInfoText = (TextView) findViewById(R.id.model_info);
        pitchLabel = (TextView) findViewById(R.id.pitch_label);
        inputInfo = (TextView) findViewById(R.id.input_info);
        statsText = (TextView) findViewById(R.id.stats);
        status = (TextView) findViewById(R.id.status);
        autoKey = (CheckBox) findViewById(R.id.auto_key);
        pitch = (SeekBar) findViewById(R.id.pitch);
        progress = (ProgressBar) findViewById(R.id.progress);
        recordButton = (Button) findViewById(R.id.record);
        convertButton = (Button) findViewById(R.id.convert);
        cancelButton = (Button) findViewById(R.id.cancel);

        findViewById(R.id.import_model).setOnClickListener(v -> pick(PICK_MODEL, "*/*"));
        findViewById(R.id.rescan).setOnClickListener(v -> refreshModels(null));
        findViewById(R.id.open_wav).setOnClickListener(v -> pick(PICK_WAV, "audio/*"));
        recordButton.setOnClickListener(v -> toggleRecording());
        convertButton.setOnClickListener(v -> convert());
        cancelButton.setOnClickListener(v -> cancel.set(true));
        findViewById(R.id.play_original).setOnClickListener(v -> playOriginal());
        findViewById(R.id.play_converted).setOnClickListener(v -> playConverted());
        findViewById(R.id.stop).setOnClickListener(v -> stopPlayback());
        findViewById(R.id.save).setOnClickListener(v -> save());
        autoKey.setOnCheckedChangeListener((b, checked) -> updatePitchLabel());
        pitch.setOnSeekBarChangeListener(new SeekBar.OnSeekBarChangeListener() {
            @Override
            public void onProgressChanged(SeekBar bar, int value, boolean fromUser) {
                updatePitchLabel();
            }

            @Override
            public void onStartTrackingTouch(SeekBar bar) {}

            @Override
            public void onStopTrackingTouch(SeekBar bar) {}
        });
        modelSpinner.setOnItemSelectedListener(new AdapterView.OnItemSelectedListener() {
            @Override
            public void onItemSelected(AdapterView<?> parent, View view, int pos, long id) {
                if (pos >= 0 && pos < models.size()) {
                    loadModel(models.get(pos));
                }
            }

            @Override
            public void onNothingSelected(AdapterView<?> parent) {}
        });
        updatePitchLabel();
        refreshModels(null);
    }

    @Override
    protected void onDestroy() {
        cancel.set(true);
        recording = false;
        stopPlayback();
        worker.execute(() -> {
            if (program != null) {
                program.close();
                program = null;
            }
        });
        worker.shutdown();
        super.onDestroy();
    }

    // ------------------------------------------------------------------ messages

    private void showError(final String message) {
        runOnUiThread(() -> {
            status.setTextColor(ERROR_COLOR);
            status.setText(message);
        });
    }

    private void showInfo(final String message) {
        runOnUiThread(() -> {
            status.setTextColor(INFO_COLOR);
            status.setText(message);
        });
    }

    private static String describe(Throwable e) {
        if (e instanceof CoreException) {
            return e.getMessage();
        }
        return e.getClass().getSimpleName() + ": " + e.getMessage();
    }

    /** Run {@code task} on the worker thread; any throwable becomes a message on screen. */
    private void inBackground(final ThrowingRunnable task) {
        worker.execute(() -> {
            try {
                task.run();
            } catch (Throwable e) {
                showError(describe(e));
            }
        });
    }

    private interface ThrowingRunnable {
        void run() throws Exception;
    }

    // ------------------------------------------------------------------ models

    private void refreshModels(final String select) {
        models.clear();
        models.addAll(ModelFinder.find(ModelFinder.defaultFolders(getFilesDir(),
                getExternalFilesDir(null))));
        List<String> names = new ArrayList<String>();
        int chosen = 0;
        for (int i = 0; i < models.size(); i++) {
            File f = models.get(i);
            names.add(f.getName() + "  (" + f.getParent() + ")");
            if (f.getName().equals(select)) {
                chosen = i;
            }
        }
        ArrayAdapter<String> adapter = new ArrayAdapter<String>(this,
                android.R.layout.simple_spinner_item, names);
        adapter.setDropDownViewResource(android.R.layout.simple_spinner_dropdown_item);
        modelSpinner.setAdapter(adapter);
        if (models.isEmpty()) {
            modelInfoText.setText("");
            showError("No .pte program found. Import one, or push one: adb push "
                    + "demo-student_xnnpack_int8.pte " + ModelFinder.PUSH_DIR + "/");
        } else {
            modelSpinner.setSelection(chosen);
        }
    }

    private void loadModel(final File file) {
        showInfo("loading " + file.getName() + " ...");
        inBackground(() -> {
            if (program != null) {
                program.close();
                program = null;
                info = null;
            }
            EtProgram p = EtProgram.load(file, 0);
            ModelInfo mi;
            try {
                mi = p.info();
            } catch (CoreException e) {
                p.close();
                runOnUiThread(() -> singerSpinner.setAdapter(null));
                throw e;
            }
            program = p;
            info = mi;
            runOnUiThread(() -> showModel(mi));
            showInfo("ready: " + file.getName());
        });
    }

    private void showModel(ModelInfo mi) {
        ArrayAdapter<String> singers = new ArrayAdapter<String>(this,
                android.R.layout.simple_spinner_item, new ArrayList<String>(mi.speakerNames));
        singers.setDropDownViewResource(android.R.layout.simple_spinner_dropdown_item);
        singerSpinner.setAdapter(singers);
        autoKey.setEnabled(mi.hasF0Stats());
        if (!mi.hasF0Stats()) {
            autoKey.setChecked(false);
        }
        modelInfoText.setText(String.format(Locale.ROOT, "%s, %s, %d Hz, %.2f s per chunk, %d "
                + "singers%s", mi.modelName, mi.precision, mi.sampleRate, mi.chunkSeconds(),
                mi.speakerNames.size(), mi.hasF0Stats() ? "" : " (no F0 statistics: no auto key)"));
    }

    private void importModel(final Uri uri) {
        inBackground(() -> {
            String name = displayName(uri);
            if (!name.endsWith(".pte")) {
                throw new CoreException(name + ": not a .pte program (export one with compress "
                        + "export or compress run)");
            }
            File dest = new File(getFilesDir(), name);
            File tmp = new File(getFilesDir(), name + ".part");
            try (InputStream in = getContentResolver().openInputStream(uri);
                    OutputStream out = new FileOutputStream(tmp)) {
                if (in == null) {
                    throw new CoreException(name + ": cannot open");
                }
                byte[] buf = new byte[1 << 16];
                int n;
                while ((n = in.read(buf)) > 0) {
                    out.write(buf, 0, n);
                }
            }
            if (!tmp.renameTo(dest)) {
                throw new IOException("cannot move " + tmp + " to " + dest);
            }
            runOnUiThread(() -> refreshModels(name));
        });
    }

    // ------------------------------------------------------------------ input

    private void pick(int request, String type) {
        Intent intent = new Intent(Intent.ACTION_OPEN_DOCUMENT);
        intent.addCategory(Intent.CATEGORY_OPENABLE);
        intent.setType(type);
        try {
            startActivityForResult(intent, request);
        } catch (RuntimeException e) {
            showError("no file picker on this phone: " + e.getMessage());
        }
    }

    @Override
    protected void onActivityResult(int request, int result, Intent data) {
        super.onActivityResult(request, result, data);
        if (result != RESULT_OK || data == null || data.getData() == null) {
            return;
        }
        if (request == PICK_WAV) {
            readWav(data.getData());
        } else if (request == PICK_MODEL) {
            importModel(data.getData());
        }
    }

    private String displayName(Uri uri) {
        try (Cursor c = getContentResolver().query(uri,
                new String[] {OpenableColumns.DISPLAY_NAME}, null, null, null)) {
            if (c != null && c.moveToFirst() && !c.isNull(0)) {
                return c.getString(0);
            }
        } catch (RuntimeException e) {
            // a provider without a display name: fall back to the URI
        }
        String last = uri.getLastPathSegment();
        return last != null ? last : "input";
    }

    private void readWav(final Uri uri) {
        inBackground(() -> {
            String name = displayName(uri);
            Audio a;
            try (InputStream in = getContentResolver().openInputStream(uri)) {
                if (in == null) {
                    throw new CoreException(name + ": cannot open");
                }
                a = Wav.read(in, name);
            }
            a.check(name);
            setSource(a, name);
        });
    }

    private void setSource(final Audio a, final String name) {
        source = a;
        sourceName = name;
        converted = null;
        runOnUiThread(() -> {
            inputInfo.setText(String.format(Locale.ROOT, "%s: %.2f s, %d Hz, %s", name,
                    a.seconds(), a.sampleRate, a.channels() == 1 ? "mono"
                            : a.channels() == 2 ? "stereo" : a.channels() + " channels"));
            statsText.setText("");
            progress.setProgress(0);
        });
        showInfo("input ready");
    }

    private void toggleRecording() {
        if (recording) {
            recording = false;
            return;
        }
        if (checkSelfPermission(Manifest.permission.RECORD_AUDIO)
                != PackageManager.PERMISSION_GRANTED) {
            requestPermissions(new String[] {Manifest.permission.RECORD_AUDIO}, PERMISSION_RECORD);
            return;
        }
        startRecording();
    }

    @Override
    public void onRequestPermissionsResult(int request, String[] permissions, int[] results) {
        super.onRequestPermissionsResult(request, permissions, results);
        if (request != PERMISSION_RECORD) {
            return;
        }
        if (results.length > 0 && results[0] == PackageManager.PERMISSION_GRANTED) {
            startRecording();
        } else {
            showError("Recording needs the microphone permission (Settings > Apps > LHQ-SVC).");
        }
    }

    private void startRecording() {
        final int rate = info != null ? info.sampleRate : 16000;
        final int minBuf = AudioRecord.getMinBufferSize(rate, AudioFormat.CHANNEL_IN_MONO,
                AudioFormat.ENCODING_PCM_16BIT);
        if (minBuf <= 0) {
            showError("this phone cannot record mono 16-bit audio at " + rate + " Hz");
            return;
        }
        final AudioRecord rec;
        try {
            rec = new AudioRecord(MediaRecorder.AudioSource.MIC, rate, AudioFormat.CHANNEL_IN_MONO,
                    AudioFormat.ENCODING_PCM_16BIT, Math.max(minBuf, rate));
        } catch (RuntimeException e) {
            showError("cannot open the microphone: " + e.getMessage());
            return;
        }
        if (rec.getState() != AudioRecord.STATE_INITIALIZED) {
            rec.release();
            showError("cannot open the microphone (is another app recording?)");
            return;
        }
        recording = true;
        recordButton.setText(R.string.stop_recording);
        showInfo("recording at " + rate + " Hz ...");
        new Thread(() -> {
            List<short[]> blocks = new ArrayList<short[]>();
            int total = 0;
            try {
                rec.startRecording();
                short[] buf = new short[rate / 10];
                while (recording) {
                    int n = rec.read(buf, 0, buf.length);
                    if (n < 0) {
                        showError("recording failed (error " + n + ")");
                        break;
                    }
                    short[] copy = new short[n];
                    System.arraycopy(buf, 0, copy, 0, n);
                    blocks.add(copy);
                    total += n;
                }
                rec.stop();
            } catch (RuntimeException e) {
                showError("recording failed: " + e.getMessage());
            } finally {
                rec.release();
                recording = false;
                runOnUiThread(() -> recordButton.setText(R.string.record));
            }
            float[] x = new float[total];
            int at = 0;
            for (short[] b : blocks) {
                for (short s : b) {
                    x[at++] = s / 32768f;
                }
            }
            if (total == 0) {
                showError("nothing was recorded");
                return;
            }
            Audio a = Audio.mono(x, rate);
            try {
                a.check("recording");
            } catch (CoreException e) {
                showError(e.getMessage());
                return;
            }
            setSource(a, "recording");
        }, "recorder").start();
    }

    // ------------------------------------------------------------------ conversion

    private void updatePitchLabel() {
        pitchLabel.setText(autoKey.isChecked() ? "auto"
                : String.format(Locale.ROOT, "%+d st", pitch.getProgress() - Pitch.MAX_SHIFT));
        pitch.setEnabled(!autoKey.isChecked());
    }

    private void setBusy(final boolean busy) {
        runOnUiThread(() -> {
            convertButton.setEnabled(!busy);
            cancelButton.setEnabled(busy);
        });
    }

    private void convert() {
        if (program == null || info == null) {
            showError("Choose a model first (the list at the top).");
            return;
        }
        if (source == null) {
            showError("Open a WAV file or record first.");
            return;
        }
        final int singer = singerSpinner.getSelectedItemPosition();
        final boolean auto = autoKey.isChecked();
        final int manual = pitch.getProgress() - Pitch.MAX_SHIFT;
        final Audio input = source;
        final String name = sourceName;
        cancel.set(false);
        setBusy(true);
        showInfo("converting ...");
        worker.execute(() -> {
            try {
                convertNow(input, name, singer, auto, manual);
            } catch (ChunkedConverter.CancelledException e) {
                showInfo(e.getMessage());
            } catch (Throwable e) {
                showError(describe(e));
            } finally {
                setBusy(false);
            }
        });
    }

    private void convertNow(Audio input, String name, int singer, boolean auto, int manual)
            throws CoreException {
        final ModelInfo mi = info;
        if (singer < 0 || singer >= mi.speakerNames.size()) {
            throw new CoreException("choose a target singer");
        }
        long t0 = System.nanoTime();
        float[] mono = input.toMono();
        if (input.sampleRate != mi.sampleRate) {
            mono = Resampler.resample(mono, input.sampleRate, mi.sampleRate);
        }
        float shift = manual;
        String key = String.format(Locale.ROOT, "shift %+d semitones", manual);
        if (auto) {
            double src = Pitch.sourceMedianF0(mono, mi.sampleRate, name);
            double target = mi.speakerF0Hz[singer];
            int s = Pitch.chooseShift(src, target);
            shift = s;
            key = Pitch.describe(s, src, target, mi.speakerNames.get(singer));
        }
        ChunkedConverter conv = new ChunkedConverter(program, mi.chunkFrames, mi.sampleRate);
        ChunkedConverter.Result r = conv.convert(mono, singer, shift, (done, total) ->
                runOnUiThread(() -> {
                    progress.setMax(total);
                    progress.setProgress(done);
                }), cancel::get);
        double wallS = (System.nanoTime() - t0) / 1e9;
        double audioS = mono.length / (double) mi.sampleRate;
        LatencyStats st = LatencyStats.summarize(r.chunkMillis);
        converted = r.audio;
        final String text = String.format(Locale.ROOT, "%s\n%d chunks of %.2f s: latency p50 %.1f "
                + "ms, p90 %.1f ms, min %.1f ms per chunk\nRTF %.3f (program calls) / %.3f (all, "
                + "with resampling and F0) for %.2f s of audio", key, r.chunkMillis.size(),
                mi.chunkSeconds(), st.p50, st.p90, st.min, r.totalMillis() / 1000.0 / audioS,
                wallS / audioS, audioS);
        runOnUiThread(() -> statsText.setText(text));
        showInfo("converted to " + mi.speakerNames.get(singer));
    }

    // ------------------------------------------------------------------ playback and saving

    private void playOriginal() {
        if (source == null) {
            showError("Open a WAV file or record first.");
            return;
        }
        play(source.toMono(), source.sampleRate);
    }

    private void playConverted() {
        if (converted == null || info == null) {
            showError("Convert first.");
            return;
        }
        play(converted, info.sampleRate);
    }

    private void play(float[] x, int rate) {
        stopPlayback();
        try {
            AudioTrack t = new AudioTrack.Builder()
                    .setAudioAttributes(new AudioAttributes.Builder()
                            .setUsage(AudioAttributes.USAGE_MEDIA)
                            .setContentType(AudioAttributes.CONTENT_TYPE_MUSIC).build())
                    .setAudioFormat(new AudioFormat.Builder()
                            .setEncoding(AudioFormat.ENCODING_PCM_FLOAT).setSampleRate(rate)
                            .setChannelMask(AudioFormat.CHANNEL_OUT_MONO).build())
                    .setTransferMode(AudioTrack.MODE_STATIC)
                    .setBufferSizeInBytes(Math.max(4, x.length * 4))
                    .build();
            t.write(x, 0, x.length, AudioTrack.WRITE_BLOCKING);
            t.play();
            track = t;
        } catch (RuntimeException e) {
            showError("cannot play: " + e.getMessage());
        }
    }

    private void stopPlayback() {
        AudioTrack t = track;
        track = null;
        if (t != null) {
            try {
                t.stop();
            } catch (IllegalStateException ignored) {
                // it had not started: releasing is all that is left
            }
            t.release();
        }
    }

    private void save() {
        if (converted == null || info == null) {
            showError("Convert first.");
            return;
        }
        final float[] x = converted;
        final ModelInfo mi = info;
        final String singer =
                mi.speakerNames.get(Math.max(0, singerSpinner.getSelectedItemPosition()));
        inBackground(() -> {
            String base = sourceName.replaceAll("\\.[A-Za-z0-9]+$", "");
            String file = (base + "_to_" + singer).replaceAll("[^A-Za-z0-9._-]+", "_") + ".wav";
            byte[] wav = Wav.encode(Audio.mono(x, mi.sampleRate), Wav.FORMAT_PCM);
            if (Build.VERSION.SDK_INT >= 29) {
                ContentValues v = new ContentValues();
                v.put(MediaStore.MediaColumns.DISPLAY_NAME, file);
                v.put(MediaStore.MediaColumns.MIME_TYPE, "audio/wav");
                v.put(MediaStore.MediaColumns.RELATIVE_PATH,
                        Environment.DIRECTORY_MUSIC + "/LHQ-SVC");
                v.put(MediaStore.MediaColumns.IS_PENDING, 1);
                Uri uri = getContentResolver().insert(
                        MediaStore.Audio.Media.EXTERNAL_CONTENT_URI, v);
                if (uri == null) {
                    throw new IOException("the media store refused " + file);
                }
                try (OutputStream out = getContentResolver().openOutputStream(uri)) {
                    if (out == null) {
                        throw new IOException("cannot write " + uri);
                    }
                    out.write(wav);
                }
                v.clear();
                v.put(MediaStore.MediaColumns.IS_PENDING, 0);
                getContentResolver().update(uri, v, null, null);
                showInfo("saved Music/LHQ-SVC/" + file);
            } else {
                File dir = getExternalFilesDir(Environment.DIRECTORY_MUSIC);
                if (dir == null) {
                    throw new IOException("no external storage to save to");
                }
                File out = new File(dir, file);
                try (OutputStream o = new FileOutputStream(out)) {
                    o.write(wav);
                }
                showInfo("saved " + out);
            }
        });
    }
}
