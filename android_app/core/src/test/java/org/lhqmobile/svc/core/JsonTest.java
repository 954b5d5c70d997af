package org.lhqmobile.svc.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.Test;

public class JsonTest {
    @Test
    public void parsesAndWritesRoundTrip() throws Exception {
        String text = "{\"a\": [1, -2.5e-3, true, false, null], \"b\": {\"c\": \"x\\\"y\\\\z\\n\\u00e9\"},"
                + " \"big\": 12345678901234567890, \"empty\": {}, \"none\": []}";
        Map<String, Object> m = Json.parseObject(text);
        assertEquals(Arrays.asList(1L, -0.0025, true, false, null), m.get("a"));
        assertEquals("x\"y\\z\n\u00e9", ((Map<?, ?>) m.get("b")).get("c"));
        assertEquals(1.2345678901234567e19, (Double) m.get("big"), 0.0);
        assertEquals(m, Json.parseObject(Json.write(m)));
        assertEquals(m, Json.parseObject(Json.writePretty(m)));
        assertEquals(Arrays.asList("a", "b", "big", "empty", "none"),
                Arrays.asList(m.keySet().toArray()));
    }

    @Test
    public void refusesBadTextAndNonFiniteNumbers() {
        for (String bad : new String[] {"", "{", "[1,]", "{\"a\" 1}", "01x", "\"\\q\"", "nul", "[1] 2"}) {
            try {
                Json.parse(bad);
                fail("accepted " + bad);
            } catch (CoreException e) {
                assertTrue(e.getMessage(), e.getMessage().startsWith("JSON: "));
            }
        }
        Map<String, Object> m = new LinkedHashMap<String, Object>();
        m.put("x", Double.NaN);
        try {
            Json.write(m);
            fail();
        } catch (CoreException e) {
            assertTrue(e.getMessage().contains("non-finite"));
        }
    }

    @Test
    public void typedAccessNamesTheKey() throws Exception {
        Map<String, Object> m = Json.parseObject("{\"n\": 16000.0, \"s\": \"x\", \"l\": [1, 2.5]}");
        assertEquals(16000L, Json.getLong(m, "n"));
        assertEquals(2.5, Json.getDoubles(m, "l")[1], 0.0);
        try {
            Json.getDouble(m, "s");
            fail();
        } catch (CoreException e) {
            assertEquals("JSON key 's': expected a number, got a string", e.getMessage());
        }
        assertNull(Json.parse("null"));
        List<?> l = (List<?>) Json.parse("[\"\\ud83c\\udfb5\"]");
        assertEquals("\ud83c\udfb5", l.get(0));
    }
}
