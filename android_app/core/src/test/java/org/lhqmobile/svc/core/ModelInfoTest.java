package org.lhqmobile.svc.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.Test;

/** Metadata blobs written by export.metadata, read by the app. */
public class ModelInfoTest {
    private static String blob(String name) throws Exception {
        return Vectors.text(new File(Vectors.dir("metadata"), name + ".json"));
    }

    private static Map<String, Object> expect(String name) throws Exception {
        return Vectors.obj(Vectors.obj(Vectors.obj(Vectors.manifest("metadata")).get("expect"))
                .get(name));
    }

    @Test
    public void readsThePipelineProgram() throws Exception {
        ModelInfo m = ModelInfo.fromJson(blob("pipeline"), "demo.pte");
        Map<String, Object> e = expect("pipeline");
        assertEquals(Json.getLong(e, "sample_rate"), m.sampleRate);
        assertEquals(Json.getLong(e, "chunk_frames"), m.chunkFrames);
        assertEquals(e.get("speaker_names"), m.speakerNames);
        assertArrayEquals(Json.getDoubles(e, "speaker_f0_hz"), m.speakerF0Hz, 0.0);
        assertEquals(e.get("model_name"), m.modelName);
        assertEquals(e.get("precision"), m.precision);
        assertEquals(1.0, m.chunkSeconds(), 0.0);
        assertTrue(m.hasF0Stats());
        assertEquals(2, m.speakerIndex("soprano \"sue\""));
    }

    @Test
    public void programsWithoutNamesGetIndexNames() throws Exception {
        ModelInfo m = ModelInfo.fromJson(blob("pipeline_no_names"), "old.pte");
        Map<String, Object> e = expect("pipeline_no_names");
        assertEquals(e.get("speaker_names"), m.speakerNames);
        assertNull(m.speakerF0Hz);
        assertFalse(m.hasF0Stats());
        assertEquals(8000, m.chunkFrames);
    }

    @Test
    public void wrongProgramsAreClearErrors() throws Exception {
        for (String name : new String[] {"separator", "dynamic"}) {
            try {
                ModelInfo.fromJson(blob(name), name + ".pte");
                fail(name + " accepted");
            } catch (CoreException ex) {
                String want = (String) expect(name).get("error");
                assertTrue(ex.getMessage(), ex.getMessage().contains(want));
                assertTrue(ex.getMessage(), ex.getMessage().startsWith(name + ".pte: "));
            }
        }
        try {
            ModelInfo.fromJson("not json", "x.pte");
            fail();
        } catch (CoreException ex) {
            assertTrue(ex.getMessage(), ex.getMessage().startsWith("x.pte: the metadata is not"));
        }
        try {
            ModelInfo.fromJson(blob("pipeline"), "d.pte").speakerIndex("nobody");
            fail();
        } catch (CoreException ex) {
            assertTrue(ex.getMessage(), ex.getMessage().contains("valid: alto_anna, bass_bo"));
        }
    }

    @Test
    public void readsKeysFromSeparateConstantMethods() throws Exception {
        // what the app assembles from get_<key> methods when get_metadata_json is missing
        Map<String, Object> meta = new LinkedHashMap<String, Object>();
        meta.put("family", "lhq-svc");
        meta.put("component", "pipeline");
        meta.put("sample_rate", 16000L);
        meta.put("chunk_frames", 16000.0);
        meta.put("speakers", 2L);
        meta.put("speaker_names", "[\"a\", \"b\"]");
        ModelInfo m = ModelInfo.fromMap(meta, "m.pte");
        assertEquals(2, m.speakerNames.size());
        meta.remove("chunk_frames");
        try {
            ModelInfo.fromMap(meta, "m.pte");
            fail();
        } catch (CoreException ex) {
            assertTrue(ex.getMessage(), ex.getMessage().contains("lacks chunk_frames"));
        }
    }

    @Test
    public void metadataOfEveryCaseParsesAsJson() throws Exception {
        List<Object> cases = Vectors.list(Vectors.obj(Vectors.manifest("metadata")).get("cases"));
        for (Object o : cases) {
            Map<String, Object> c = Vectors.obj(o);
            Map<String, Object> parsed = Json.parseObject(blob((String) c.get("name")));
            assertEquals(c.get("name").toString(), c.get("metadata"), parsed);
        }
    }
}
