"""Files of plain data and tensors (policy files, surrogate models), in one way.

* :func:`plain`: a value as plain data (dict with str keys, list, str, int, float, bool, None),
  numpy scalars and arrays converted; anything else is refused by name. Plain data is what
  ``torch.load(weights_only=True)`` reads back without unpickling a class, and what ``json``
  writes.
* :func:`save`: ``torch.save`` into memory, then written through a temporary file renamed onto
  the target. The bytes do not depend on the file name (``torch.save`` to a path names the
  archive after the file), so the same content gives the same bytes wherever it is written,
  and a crash never leaves half a file.
* :func:`load`: ``torch.load(weights_only=True)`` and a check of the ``format``/``version``
  entry, with an error that names the file and the fix.
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["load", "plain", "save", "write_atomically"]


def plain(value: Any, where: str = "value", error: type[Exception] = TypeError) -> Any:
    """``value`` as plain data, or ``error`` naming where the first non-plain entry is.

    Args:
        value: nested dicts, lists, tuples, numpy arrays and scalars, str, int, float, bool, None.
        where: the value's name, for the message (``info['seed']``).
        error: exception class raised for an entry that is not plain data.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return plain(value.tolist(), where, error)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise error(f"{where} has a non-string key {k!r}; these files hold plain data only")
            out[k] = plain(v, f"{where}[{k!r}]", error)
        return out
    if isinstance(value, (list, tuple)):
        return [plain(v, f"{where}[{i}]", error) for i, v in enumerate(value)]
    raise error(f"{where} is {value!r} of type {type(value).__name__}; these files hold plain data only "
                "(dict, list, str, int, float, bool, None, numpy numbers and arrays) so they load with weights_only=True")


def write_atomically(path: str | os.PathLike[str], write: Callable[[str], None],
                     error: type[Exception] = OSError) -> None:
    """``write(tmp)`` to a temporary file beside ``path`` (same suffix), then rename it onto ``path``.

    A crash or an error never leaves half a file, and an existing file stays as it was.

    Raises:
        error: the file cannot be written (the message names it and the reason).
    """
    target = Path(os.fspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=target.suffix)
    except OSError as e:
        raise error(f"cannot write {str(target)!r}: {e}; choose a writable folder that exists") from e
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise error(f"cannot write {str(target)!r}: {e}") from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(path: str | os.PathLike[str], content: dict[str, Any], error: type[Exception] = OSError) -> None:
    """Write ``content`` (plain data and tensors) to ``path``, atomically and byte-reproducibly.

    Raises:
        error: the file cannot be written (the message names it and the reason).
    """
    buffer = io.BytesIO()
    torch.save(content, buffer)
    write_atomically(path, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()), error)


def load(path: str | os.PathLike[str], file_format: tuple[str, int], what: str, error: type[Exception] = OSError,
         fix: str = "") -> dict[str, Any]:
    """Read a file written by :func:`save` whose ``format`` and ``version`` are ``file_format``.

    Args:
        path: the file.
        file_format: ``(format, version)`` expected in it.
        what: what the file is, for messages ("policy file").
        error: exception class for a missing, unreadable or foreign file.
        fix: what to do about it, appended to the message.

    Returns:
        The content, a dict of plain data and tensors.
    """
    p = os.fspath(path)
    hint = f"; {fix}" if fix else ""
    if not os.path.isfile(p):
        raise error(f"cannot read {what} {p!r}: no such file{hint}")
    try:
        data = torch.load(p, weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as e:  # torch: not an archive -> RuntimeError
        raise error(f"cannot read {what} {p!r}: {e}{hint}") from e
    found = (data.get("format"), data.get("version")) if isinstance(data, dict) else type(data).__name__
    if found != tuple(file_format):
        raise error(f"{p!r} is not a pfmtwin {what}: format {found!r}, expected {tuple(file_format)!r}{hint}")
    return data
