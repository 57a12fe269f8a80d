"""The base of odenet's own errors.

Every error that means "the user asked for something invalid or the input is bad" derives
from :class:`OdenetError` (and keeps its ``ValueError``/``RuntimeError`` base for callers
that catch those).  The CLI prints these as one clean line; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

__all__ = ["OdenetError", "ConfigError"]


class OdenetError(Exception):
    """A user-facing error: the message names the problem and what to do instead."""


class ConfigError(OdenetError, ValueError):
    """A configuration value is invalid; the message names the field and the value."""
