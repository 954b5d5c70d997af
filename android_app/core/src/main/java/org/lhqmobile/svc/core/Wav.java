package org.lhqmobile.svc.core;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * RIFF/WAVE read and write.
 *
 * <p>Read: integer PCM of 8 (unsigned), 16, 24 and 32 bits, IEEE float of 32 and 64 bits, plain
 * or {@code WAVE_FORMAT_EXTENSIBLE}, any number of channels. Samples are scaled as libsndfile
 * scales them when it reads integers as float (16 bit: x / 32768), so a file reads to exactly
 * the samples of {@code models.audio.load_audio(path, channels=None)}. A streamed file (data
 * size 0 or 0xFFFFFFFF) and a file cut off inside its data chunk give the frames present;
 * everything else that is not a readable WAV is a {@link CoreException} that says what was found.
 *
 * <p>Write: 16-bit PCM or 32-bit float. PCM samples are clipped to [-1, 1], scaled by 32768,
 * floored and kept within [-32768, 32767]: what {@code models.audio.write_wav} (libsndfile 1.2)
 * writes for the same floats, sample for sample (checked on the shared test vectors).
 */
public final class Wav {
    public static final int FORMAT_PCM = 1;
    public static final int FORMAT_FLOAT = 3;
    private static final int FORMAT_EXTENSIBLE = 0xFFFE;

    private Wav() {}

    /** Read a file. */
    public static Audio read(File file) throws CoreException {
        InputStream in = null;
        try {
            in = new FileInputStream(file);
            return read(in, file.getName());
        } catch (IOException e) {
            throw new CoreException(file + ": cannot read (" + e.getMessage() + ")", e);
        } finally {
            closeQuietly(in);
        }
    }

    /** Read a whole stream (e.g. a content URI the user picked); {@code name} labels errors. */
    public static Audio read(InputStream in, String name) throws CoreException, IOException {
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        byte[] block = new byte[1 << 16];
        int n;
        while ((n = in.read(block)) > 0) {
            buf.write(block, 0, n);
        }
        return decode(buf.toByteArray(), name);
    }

    /** Decode the bytes of a WAV file. */
    public static Audio decode(byte[] data, String name) throws CoreException {
        if (data.length == 0) {
            throw new CoreException(name + ": file is empty (0 bytes)");
        }
        ByteBuffer b = ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN);
        if (data.length < 12 || !tag(data, 0, "RIFF") || !tag(data, 8, "WAVE")) {
            throw new CoreException(name + ": unsupported audio: not a RIFF/WAVE file (the app "
                    + "reads WAV: 8/16/24/32-bit PCM or 32/64-bit float; convert other formats "
                    + "to WAV first)");
        }
        int format = -1;
        int channels = 0;
        int rate = 0;
        int blockAlign = 0;
        int bits = 0;
        int pos = 12;
        while (pos + 8 <= data.length) {
            long size = b.getInt(pos + 4) & 0xFFFFFFFFL;
            int body = pos + 8;
            if (tag(data, pos, "fmt ")) {
                if (size < 16 || body + 16 > data.length) {
                    throw new CoreException(name + ": fmt chunk too short (" + size + " bytes)");
                }
                format = b.getShort(body) & 0xFFFF;
                channels = b.getShort(body + 2) & 0xFFFF;
                rate = b.getInt(body + 4);
                blockAlign = b.getShort(body + 12) & 0xFFFF;
                bits = b.getShort(body + 14) & 0xFFFF;
                if (format == FORMAT_EXTENSIBLE) {
                    if (size < 40 || body + 26 > data.length) {
                        throw new CoreException(name + ": extensible fmt chunk too short");
                    }
                    format = b.getShort(body + 24) & 0xFFFF; // first two bytes of the GUID
                }
            } else if (tag(data, pos, "data")) {
                if (format < 0) {
                    throw new CoreException(name + ": data chunk before the fmt chunk");
                }
                long avail = data.length - body;
                long len = (size == 0 || size == 0xFFFFFFFFL || size > avail) ? avail : size;
                return samples(b, body, (int) len, format, channels, rate, blockAlign, bits, name);
            }
            pos = (int) Math.min((long) data.length, body + size + (size & 1));
        }
        throw new CoreException(name + ": no data chunk" + (format < 0 ? " and no fmt chunk" : ""));
    }

    private static Audio samples(ByteBuffer b, int start, int len, int format, int channels,
            int rate, int blockAlign, int bits, String name) throws CoreException {
        if (channels < 1) {
            throw new CoreException(name + ": " + channels + " channels");
        }
        if (rate < Audio.MIN_RATE || rate > Audio.MAX_RATE) {
            throw new CoreException(name + ": sample rate " + rate + " Hz is outside ["
                    + Audio.MIN_RATE + ", " + Audio.MAX_RATE + "] Hz");
        }
        boolean pcm = format == FORMAT_PCM && (bits == 8 || bits == 16 || bits == 24 || bits == 32);
        boolean flt = format == FORMAT_FLOAT && (bits == 32 || bits == 64);
        if (!pcm && !flt) {
            throw new CoreException(name + ": unsupported audio: WAV format " + format + " with "
                    + bits + " bits (supported: PCM 8/16/24/32-bit, float 32/64-bit)");
        }
        int width = bits / 8;
        if (blockAlign != width * channels) {
            throw new CoreException(name + ": block align " + blockAlign + " does not match "
                    + channels + " channels of " + bits + " bits");
        }
        int frames = len / blockAlign;
        if (frames == 0) {
            throw new CoreException(name + ": audio has no frames");
        }
        float[][] out = new float[channels][frames];
        int p = start;
        for (int t = 0; t < frames; t++) {
            for (int c = 0; c < channels; c++) {
                float v;
                if (flt) {
                    v = bits == 32 ? b.getFloat(p) : (float) b.getDouble(p);
                } else if (bits == 8) {
                    v = ((b.get(p) & 0xFF) - 128) / 128f;
                } else if (bits == 16) {
                    v = b.getShort(p) / 32768f;
                } else if (bits == 24) {
                    int x = (b.get(p) & 0xFF) | ((b.get(p + 1) & 0xFF) << 8) | (b.get(p + 2) << 16);
                    v = (float) (x / 8388608.0);
                } else {
                    v = (float) (b.getInt(p) / 2147483648.0);
                }
                out[c][t] = v;
                p += width;
            }
        }
        return new Audio(out, rate);
    }

    private static boolean tag(byte[] data, int at, String name) {
        if (at + 4 > data.length) {
            return false;
        }
        for (int i = 0; i < 4; i++) {
            if (data[at + i] != (byte) name.charAt(i)) {
                return false;
            }
        }
        return true;
    }

    // ---------------------------------------------------------------- writing

    /** WAV bytes of {@code audio}: {@code format} {@link #FORMAT_PCM} (16-bit) or {@link #FORMAT_FLOAT}. */
    public static byte[] encode(Audio audio, int format) {
        if (format != FORMAT_PCM && format != FORMAT_FLOAT) {
            throw new IllegalArgumentException("format " + format + "; valid: 1 (PCM 16) or 3 (float)");
        }
        int channels = audio.channels();
        int frames = audio.frames();
        int width = format == FORMAT_PCM ? 2 : 4;
        int dataLen = frames * channels * width;
        ByteBuffer b = ByteBuffer.allocate(44 + dataLen).order(ByteOrder.LITTLE_ENDIAN);
        b.put(new byte[] {'R', 'I', 'F', 'F'}).putInt(36 + dataLen);
        b.put(new byte[] {'W', 'A', 'V', 'E', 'f', 'm', 't', ' '}).putInt(16);
        b.putShort((short) format).putShort((short) channels).putInt(audio.sampleRate);
        b.putInt(audio.sampleRate * channels * width).putShort((short) (channels * width));
        b.putShort((short) (width * 8));
        b.put(new byte[] {'d', 'a', 't', 'a'}).putInt(dataLen);
        for (int t = 0; t < frames; t++) {
            for (int c = 0; c < channels; c++) {
                float x = audio.samples[c][t];
                if (format == FORMAT_FLOAT) {
                    b.putFloat(x);
                } else {
                    b.putShort(toPcm16(x));
                }
            }
        }
        return b.array();
    }

    /** One float sample as 16-bit PCM: clipped to [-1, 1], times 32768, floored, clamped. */
    public static short toPcm16(float x) {
        float c = Math.max(-1f, Math.min(1f, Float.isNaN(x) ? 0f : x));
        return (short) Math.max(-32768.0, Math.min(32767.0, Math.floor(c * 32768f)));
    }

    /** Write {@code audio} to {@code out} (the stream is not closed). */
    public static void write(Audio audio, int format, OutputStream out) throws IOException {
        out.write(encode(audio, format));
    }

    /** Write {@code audio} to a file: a temporary file renamed at the end, never half a file. */
    public static void write(Audio audio, int format, File file) throws IOException {
        File tmp = new File(file.getPath() + ".part");
        java.io.FileOutputStream out = new java.io.FileOutputStream(tmp);
        try {
            write(audio, format, out);
        } finally {
            out.close();
        }
        if (!tmp.renameTo(file)) {
            tmp.delete();
            throw new IOException("cannot rename " + tmp + " to " + file);
        }
    }

    private static void closeQuietly(InputStream in) {
        if (in != null) {
            try {
                in.close();
            } catch (IOException ignored) {
                // closing a file we only read: nothing to recover
            }
        }
    }
}
