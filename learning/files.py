"""Files of plain data and tensors (policy files, surrogate models), in one way.

* :func:`plain_data`: a value as plain data (dict with str keys, list, str, int, float, bool, None),
  numpy scalars and arrays converted; anything else is refused by name. Plain data is what
  ``torch.load(weights_only=True)`` reads back without unpickling a class, and what ``json``
  writes.
* :func:`save_file`: ``torch.save`` into memory, then written through a temporary file renamed onto
  the target. The bytes do not depend on the file name (``torch.save`` to a path names the
  archive after the file), so the same content gives the same bytes wherever it is written,
  and a crash never leaves half a file.
* :func:`load_file`: ``torch.load(weights_only=True)`` and a check of the ``format``/``version``
  entry (and of the entries the caller names), with an error that names the file, why it
  cannot be used and the fix, for any file: missing, a folder, unreadable, not a PyTorch file
  (text, random bytes, a cut-short file), a PyTorch file of classes, or a foreign one.

Files are created as ``open()`` creates them (mode 0o666 less the umask: 0o644 under the usual
umask 022), like the session recordings of ``control.recording``.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import secrets
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["load_file", "plain_data", "save_file", "write_atomically"]


def plain_data(value: Any, where: str = "value", error: type[Exception] = TypeError) -> Any:
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
        return plain_data(value.tolist(), where, error)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise error(f"{where} has a non-string key {k!r}; these files hold plain data only")
            out[k] = plain_data(v, f"{where}[{k!r}]", error)
        return out
    if isinstance(value, (list, tuple)):
        return [plain_data(v, f"{where}[{i}]", error) for i, v in enumerate(value)]
    raise error(f"{where} is {value!r} of type {type(value).__name__}; these files hold plain data only "
                "(dict, list, str, int, float, bool, None, numpy numbers and arrays) so they load with weights_only=True")


def _create_beside(target: Path) -> str:
    """A new empty file ``.NAME.RANDOM.SUFFIX`` beside ``target``, created as ``open(..., "x")`` creates
    one (mode 0o666 less the umask), unlike ``tempfile.mkstemp`` (always 0o600)."""
    for _ in range(100):
        tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}{target.suffix}"
        try:
            with open(tmp, "xb"):
                return str(tmp)
        except FileExistsError:
            continue
    raise FileExistsError(f"100 temporary names beside {str(target)!r} are taken")


def write_atomically(path: str | os.PathLike[str], write: Callable[[str], None],
                     error: type[Exception] = OSError) -> None:
    """``write(tmp)`` to a temporary file beside ``path`` (same suffix), then rename it onto ``path``.

    A crash or an error never leaves half a file, and an existing file stays as it was. The file
    gets the mode ``open()`` would give it (0o666 less the umask).

    Raises:
        error: the file cannot be written (the message names it and the reason).
    """
    target = Path(os.fspath(path))
    try:
        tmp = _create_beside(target)
    except OSError as e:
        raise error(f"cannot write {str(target)!r}: {e}; choose a writable folder that exists") from e
    try:
        write(tmp)
        os.replace(tmp, target)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise error(f"cannot write {str(target)!r}: {e}") from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_file(path: str | os.PathLike[str], content: dict[str, Any], error: type[Exception] = OSError) -> None:
    """Write ``content`` (plain data and tensors) to ``path``, atomically and byte-reproducibly.

    Raises:
        error: the file cannot be written (the message names it and the reason).
    """
    buffer = io.BytesIO()
    torch.save(content, buffer)
    write_atomically(path, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()), error)


def _one_line(text: str, limit: int = 200) -> str:
    """``text`` on one line (whitespace and terminal escapes collapsed), at most ``limit`` characters."""
    flat = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _torch_reason(e: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` failed, in one line (its own messages run to paragraphs)."""
    text = str(e)
    if isinstance(e, pickle.UnpicklingError) and "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation")[0]
        detail = _one_line(detail).split(". Please use")[0].rstrip(".")
        return f"it holds more than plain data and tensors, or is corrupt (torch.load(weights_only=True): {detail})"
    detail = _one_line(text)
    return f"corrupt PyTorch file (torch.load: {type(e).__name__}{': ' + detail if detail else ''})"


def _kinds(kind: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))


def load_file(path: str | os.PathLike[str], file_format: tuple[str, int], what: str, error: type[Exception] = OSError,
         fix: str = "", entries: Mapping[str, type | tuple[type, ...]] | None = None) -> dict[str, Any]:
    """Read a file written by :func:`save_file` whose ``format`` and ``version`` are ``file_format``.

    Any other file is refused with ``error`` naming ``what``, the file (and, for a relative
    path, where it resolves), why, and ``fix``: missing, a folder, unreadable, not a PyTorch
    file (``torch.save`` writes a zip archive: text, random bytes or a cut-short file are not
    one), a corrupt archive, one of more than plain data and tensors (refused by
    ``weights_only=True``, never unpickled), not a dict, another format or version, or a
    missing or mistyped entry of ``entries``.

    Args:
        path: the file.
        file_format: ``(format, version)`` expected in it.
        what: what the file is, for messages ("policy file").
        error: exception class for a missing, unreadable or foreign file.
        fix: what to do about it, appended to the message.
        entries: entries the content must hold, with their types (``{"actor": torch.Tensor}``).

    Returns:
        The content, a dict of plain data and tensors.

    Raises:
        error: the file cannot be read or is not such a file (a one-line message).
    """
    p = os.fspath(path)
    name = repr(p) if os.path.isabs(p) else f"{p!r} ({os.path.abspath(p)!r})"
    hint = f"; {fix}" if fix else ""

    def refused(why: str) -> Exception:
        return error(f"cannot read {what} {name}: {why}{hint}")

    if os.path.isdir(p):
        raise refused("it is a folder, not a file")
    if not os.path.isfile(p):
        raise refused("no such file")
    try:
        with open(p, "rb") as f:
            archive = zipfile.is_zipfile(f)
    except OSError as e:
        raise refused(_one_line(e.strerror or str(e))) from e
    if not archive:
        raise refused("not a PyTorch file (torch.save writes a zip archive; this file is none, or is cut short)")
    try:
        data = torch.load(p, weights_only=True)
    # torch.load of a damaged archive fails in many ways (RuntimeError from the zip reader,
    # EOFError, IndexError, KeyError, UnicodeDecodeError ... from the unpickler): all mean "corrupt".
    except (pickle.UnpicklingError, OSError, RuntimeError, EOFError, ValueError, LookupError, TypeError,
            AttributeError) as e:
        raise refused(_torch_reason(e)) from e
    if not isinstance(data, dict):
        raise error(f"{name} is not a pfmtwin {what}: it holds a {type(data).__name__}, not a dict with format and "
                    f"version{hint}")
    found = (data.get("format"), data.get("version"))
    if found != tuple(file_format):
        raise error(f"{name} is not a pfmtwin {what}: format {found!r}, expected {tuple(file_format)!r}{hint}")
    for key, kind in (entries or {}).items():
        if key not in data:
            raise error(f"{name} is a pfmtwin {what} without its entry {key!r}{hint}")
        if not isinstance(data[key], kind):
            raise error(f"{name} is a pfmtwin {what} whose entry {key!r} is a {type(data[key]).__name__}; expected a "
                        f"{_kinds(kind)}{hint}")
    return data
