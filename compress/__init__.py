"""How models are compressed: pipeline stages, configs, scores and the `compress` CLI."""

from compress.errors import CompressError, ConfigError, Problem

__all__ = ["CompressError", "ConfigError", "Problem"]
