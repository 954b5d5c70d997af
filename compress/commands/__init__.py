"""One module per CLI command; each exposes ``register(subparsers)``.

A command module calls :func:`compress.cli_util.add_command` and attaches a ``run(args) -> int``
handler. Register a command only when it works.
"""
