package org.lhqmobile.svc.core;

/**
 * The one exception family of the core: bad audio, a wrong model, bad benchmark settings, a
 * malformed JSON or input file. Messages say what was given, what was expected and the valid
 * choices, so the app can show them on screen as they are.
 */
public class CoreException extends Exception {
    private static final long serialVersionUID = 1L;

    public CoreException(String message) {
        super(message);
    }

    public CoreException(String message, Throwable cause) {
        super(message, cause);
    }
}
