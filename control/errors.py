"""The error family of pfmtwin.

One base, :class:`PfmTwinError`; every leaf also subclasses the built-in error a Python user
would catch (``ValueError``, ``TypeError``, ``OSError``), so ``except ValueError`` keeps working.
Messages name the offending value (``!r``), the limit, and the fix.
"""

from __future__ import annotations


class PfmTwinError(Exception):
    """Base of every error raised by pfmtwin."""


class LimitError(PfmTwinError, ValueError):
    """A command argument is outside the safety limits or the hardware range; nothing was sent."""


class InvalidArgumentError(PfmTwinError, TypeError):
    """A command argument has the wrong type (or is NaN/inf); nothing was sent."""


class UrlError(PfmTwinError, ValueError):
    """A backend URL has an unknown scheme, an unknown option or a malformed value."""


class InstrumentError(PfmTwinError, RuntimeError):
    """The instrument refused or failed a well-formed command (closed, busy, faulted)."""


class TransportError(PfmTwinError, OSError):
    """The link to the instrument failed (timeout, lost connection, corrupted frames)."""


class RecordingError(PfmTwinError, OSError):
    """A session file cannot be written or read."""
