"""A catalog of recorded sessions: list and search a folder of session files, or serve it through
Tiled so that the Tiled Python client and its web UI browse, search and read them.

Every ``*.h5`` file under the folder (recursively) that :class:`control.recording.Recorder` wrote
is one entry; any other file is skipped with a warning line on stderr (through :mod:`logging`),
never an error. An entry is a plain dict (:data:`FIELDS`)::

    path              absolute path of the session file
    project, investigator, sample, material, backend_url, software_version
                      the root attributes of the file (str)
    seed              the backend's seed (int), or None
    day               the twin's ``day`` option (int), or None when the backend has no such option
    created           when recording started, ISO 8601 (str)
    scans, pulses     how many complete scans and pulses the session holds

>>> from scenarios.catalog import catalog_entries, search
>>> search("sessions", ["sample=PTO-110", "investigator=ada"])  # doctest: +SKIP
[{'path': '/.../sessions/ada.h5', 'project': 'walls', 'investigator': 'ada', ...}]

``search`` matches exactly on the text of a value: ``seed=3`` matches the int 3, and an empty
value (``day=``) matches the entries where the field is None.

Serving (:func:`serve`): one Tiled server on loopback (default ``127.0.0.1``, a free port) whose
root holds one node per session, keyed by the file's path relative to the folder without
``.h5``, folders joined by ``__`` (``2026/run1.h5`` -> ``2026__run1``); the entry's fields are the
node's metadata, so Tiled's own queries search them::

    from tiled.client import from_uri
    from tiled.queries import Key
    client = from_uri(url)                              # url: the "listening" line, below
    hits = client.search(Key("sample") == "PTO-110").search(Key("seed") == 3)
    amplitude = client["run1"]["commands"]["000000"]["result"]["amplitude"].read()  # m

Below a session node the tree is the file's own layout (``hardware``, ``limits``, ``options``,
``commands/NNNNNN/{args,result}``, see :mod:`control.recording`), each group's attributes as its
metadata (references of NSID dimension scales as the names of the datasets they point to) and
each numeric dataset an array read from the file on request, bit for bit. A session node's
metadata also carries every root attribute and ``scan_results``, the nodes of its scans (e.g.
``commands/000000/result``). The web UI is at ``/ui/`` of the same server.

The folder is read once, when the server starts: restart it to see sessions recorded since.
The server is single-user: it makes a random API key (alphanumeric, 64 characters) unless given
one, and the URL it announces carries it as ``?api_key=...``, which the Tiled client and the web
browser both accept; reading without it is refused (401). When the server listens it prints
one JSON line on stdout, ``{"listening": "http://127.0.0.1:PORT/?api_key=KEY"}``, and nothing
else there (its log goes to stderr); it serves until SIGTERM or SIGINT, then closes and returns
(exit status 0 from the command line). It starts no process.

Command line (``python -m scenarios.catalog``, and ``pfmtwin catalog`` once
:func:`add_arguments` and :func:`command` are wired into :mod:`scenarios.cli`)::

    python -m scenarios.catalog FOLDER --list                 # every entry, one JSON line each
    python -m scenarios.catalog FOLDER --where sample=PTO-110 --where investigator=ada --table
    python -m scenarios.catalog FOLDER [--host 127.0.0.1] [--port 0]   # serve until interrupted

With ``--where`` or ``--list`` it prints the matching entries (JSON lines, or an aligned table
with ``--table``) and exits 0, also when none match; without either, it serves. Bad input (a
missing folder, a malformed ``--where``, a port it cannot bind) is a :class:`CatalogError`:
``pfmtwin: error: ...`` on stderr and exit status 2.

Why this way (and not ``tiled serve directory`` or Tiled's ``HDF5Adapter``): Tiled 0.2's HDF5
adapter hands every HDF5 attribute to the serializer as is, and the NSID scans of a session have
dimension scales whose ``DIMENSION_LIST`` / ``REFERENCE_LIST`` attributes are HDF5 object
references, which it cannot encode (a 500 on the first look at a session); ``tiled serve
directory`` also keeps a SQL catalog to register files in, a database to create, migrate and keep
in step with the folder. An in-memory ``MapAdapter`` tree built here, with metadata converted to
plain JSON values and lazily read arrays, needs neither, and Tiled's ``MapAdapter`` answers the
metadata queries (``Key(...) == ...``, ``!=``, ``<``, ``in``, full text, ...) itself.

Tiled is an optional dependency: only :func:`serve` imports it
(``pip install "tiled[server,client]==0.2.20"``).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import secrets
import signal
import socket
import sys
from collections.abc import Iterable
from os import PathLike
from pathlib import Path
from typing import IO, Any

import h5py
import numpy as np

from control.errors import PfmTwinError
from control.recording import FORMAT, FORMAT_VERSION

logger = logging.getLogger(__name__)

#: The fields of a catalog entry, in order; ``search`` accepts exactly these.
FIELDS = (
    "path",
    "project",
    "investigator",
    "sample",
    "material",
    "backend_url",
    "seed",
    "day",
    "software_version",
    "created",
    "scans",
    "pulses",
)
#: Root attributes copied into an entry as text.
_TEXT_FIELDS = ("project", "investigator", "sample", "material", "backend_url", "software_version", "created")
#: Session files are the ``*.h5`` files under the folder.
PATTERN = "*.h5"
#: Joins the folders of a session's relative path in its Tiled key (``a/b.h5`` -> ``a__b``).
KEY_SEPARATOR = "__"
DEFAULT_HOST = "127.0.0.1"


class CatalogError(PfmTwinError, ValueError):
    """A catalog request is malformed: a missing folder, a bad ``where`` item, a host or port
    the server cannot listen on."""


# -- reading the folder -----------------------------------------------------------------------


def _folder(folder: str | PathLike) -> Path:
    path = Path(folder).expanduser()
    if not path.exists():
        raise CatalogError(f"catalog folder {str(path)!r} does not exist; pass a folder of session files (.h5)")
    if not path.is_dir():
        raise CatalogError(
            f"catalog folder {str(path)!r} is a file, not a folder; pass the folder that holds it"
        )
    return path.resolve()


def _value(value: object) -> object:
    """An HDF5 attribute as plain data: numpy scalars as Python numbers, bytes as str, an empty
    attribute as None."""
    if isinstance(value, h5py.Empty):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _int_or_none(value: object) -> int | None:
    value = _value(value)
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _options(file: h5py.File, version: int) -> dict:
    if version == 1:  # format 1 kept options as a JSON string attribute
        return json.loads(file.attrs.get("options", "{}"))
    group = file.get("options")
    return {name: _value(value) for name, value in group.attrs.items()} if group is not None else {}


def _counts(file: h5py.File) -> tuple[int, int, list[str]]:
    """Complete scans and pulses, as :func:`control.recording.read_session` returns them, and
    the groups of the scans; read from the attributes only, no image is loaded."""
    scans, pulses, scan_groups = 0, 0, []
    records = file.get("commands")
    if records is None:
        return 0, 0, []
    for name in sorted(records, key=lambda n: (len(n), n)):
        try:
            record = records[name]
            if not record.attrs.get("complete", False) or "result" not in record:
                continue  # cut short by a crash of the writer, or a command without a result
            kind = _value(record["result"].attrs.get("kind"))
        except (KeyError, OSError, RuntimeError, ValueError):
            continue  # an entry whose object never reached the disk: in flight when the writer died
        if kind == "ScanResult":
            scans += 1
            scan_groups.append(f"commands/{name}/result")
        elif kind == "PulseRecord":
            pulses += 1
    return scans, pulses, scan_groups


def _read_entry(path: Path) -> tuple[dict, dict, list[str]]:
    """The entry of one session file, its other root attributes, and its scan groups.

    Raises:
        ValueError: the file is not a pfmtwin session of a format this pfmtwin reads.
        OSError: the file is not HDF5, unreadable, or still open in a recorder.
    """
    with h5py.File(path, "r") as file:
        attrs = file.attrs
        found = _value(attrs.get("format"))
        if found != FORMAT:
            raise ValueError(f"not a pfmtwin session (format={found!r}, expected {FORMAT!r})")
        version = _int_or_none(attrs.get("format_version"))
        if version not in (1, FORMAT_VERSION):
            raise ValueError(
                f"format_version {version!r}; this pfmtwin reads 1 and {FORMAT_VERSION}: upgrade pfmtwin to list it"
            )
        scans, pulses, scan_groups = _counts(file)
        entry: dict[str, Any] = {"path": str(path)}
        for name in _TEXT_FIELDS:
            value = _value(attrs.get(name))
            entry[name] = "" if value is None else str(value)
        entry["seed"] = _int_or_none(attrs.get("seed"))
        entry["day"] = _int_or_none(_options(file, version).get("day"))
        entry["scans"] = scans
        entry["pulses"] = pulses
        others = {
            name: _plain(file, value)
            for name, value in attrs.items()
            if name not in entry and name not in ("hardware", "limits", "options")
        }
    return {name: entry[name] for name in FIELDS}, others, scan_groups


def _session_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.rglob(PATTERN) if p.is_file()), key=lambda p: p.relative_to(folder).parts)


def _scan(folder: str | PathLike) -> tuple[Path, list[tuple[dict, dict, list[str]]]]:
    root = _folder(folder)
    found = []
    for path in _session_files(root):
        try:
            found.append(_read_entry(path))
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
            logger.warning("pfmtwin catalog: warning: skipping %s: %s", path, exc)
    return root, found


def catalog_entries(folder: str | PathLike) -> list[dict]:
    """The metadata of every session file under a folder.

    Args:
        folder: searched recursively for ``*.h5`` files.

    Returns:
        One plain dict per session file (keys :data:`FIELDS`, see the module docstring), in the
        order of their paths relative to ``folder``. A file that is not a pfmtwin session (not
        HDF5, another format, a format_version this pfmtwin cannot read, still being recorded)
        is left out, with a warning line logged on stderr.

    Raises:
        CatalogError: ``folder`` does not exist or is a file.
    """
    return [entry for entry, _, _ in _scan(folder)[1]]


def _parse_where(where: str | Iterable[str]) -> list[tuple[str, str]]:
    if isinstance(where, str):
        where = [where]
    accepted = ", ".join(FIELDS)
    terms = []
    for item in where:
        if not isinstance(item, str) or "=" not in item:
            raise CatalogError(
                f"where item {item!r} is not KEY=VALUE; write e.g. 'sample=PTO-110' with a key among: {accepted}"
            )
        key, value = item.split("=", 1)
        key = key.strip()
        if key not in FIELDS:
            raise CatalogError(f"where item {item!r} has unknown field {key!r}; accepted fields: {accepted}")
        terms.append((key, value))
    return terms


def _text(value: object) -> str:
    return "" if value is None else str(value)


def search(folder: str | PathLike, where: str | Iterable[str]) -> list[dict]:
    """The sessions under a folder whose metadata matches every condition.

    Args:
        folder: searched recursively for ``*.h5`` session files.
        where: conditions ``"KEY=VALUE"``, e.g. ``["sample=PTO-110", "investigator=ada"]``; KEY
            is one of :data:`FIELDS`; the value must equal the field's text exactly (``seed=3``;
            an empty VALUE matches a field that is None). No condition: every session.

    Returns:
        The matching entries of :func:`catalog_entries`, in its order.

    Raises:
        CatalogError: an item has no ``=`` or an unknown field (the message lists the accepted
            fields), or ``folder`` does not exist.
    """
    terms = _parse_where(where)
    return [e for e in catalog_entries(folder) if all(_text(e[key]) == value for key, value in terms)]


# -- the Tiled tree ---------------------------------------------------------------------------


def _plain(file: h5py.File, value: object) -> object:
    """An HDF5 attribute value as JSON-able data; an object reference (NSID dimension scales) as
    the name of the object it points to."""
    if isinstance(value, h5py.Reference):
        if not value:
            return None
        try:
            return file[value].name
        except (KeyError, ValueError, RuntimeError):
            return None
    if isinstance(value, np.void) and value.dtype.names:  # a compound (e.g. REFERENCE_LIST row)
        return [_plain(file, value[name]) for name in value.dtype.names]
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biuf":
            return value.tolist()
        return [_plain(file, item) for item in value]
    if isinstance(value, np.generic) and not isinstance(value, np.void):
        return value.item()
    if isinstance(value, (h5py.Empty, bytes)):
        return _value(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _attributes(file: h5py.File, obj: h5py.HLObject) -> dict:
    return {name: _plain(file, value) for name, value in obj.attrs.items()}


class _Dataset:
    """An HDF5 dataset that opens its file for each read, so that the server holds no file open
    (a recorder may then replace a file between reads; that file's node reads the new content)."""

    def __init__(self, path: Path, name: str, shape: tuple[int, ...], dtype: np.dtype, chunks):
        self.path, self.name, self.shape, self.dtype, self.chunks = path, name, shape, dtype, chunks
        self.ndim = len(shape)

    def __getitem__(self, key):
        with h5py.File(self.path, "r") as file:
            return file[self.name][key]

    def __array__(self, dtype=None, copy=None):
        data = np.asarray(self[()])
        return data if dtype is None else data.astype(dtype)


def _node(path: Path, file: h5py.File, obj: h5py.HLObject):
    from tiled.adapters.array import ArrayAdapter
    from tiled.adapters.mapping import MapAdapter
    from tiled.structures.array import ArrayStructure

    if isinstance(obj, h5py.Dataset):
        if obj.dtype.kind not in "biufc":  # strings, references, compounds: not served as arrays
            return None
        labels = [dim.label for dim in obj.dims]
        dims = tuple(labels) if labels and all(labels) else None
        array = _Dataset(path, obj.name, obj.shape, obj.dtype, obj.chunks)
        return ArrayAdapter(array, ArrayStructure.from_array(array, dims=dims), metadata=_attributes(file, obj))
    children = {}
    for name in obj:
        child = obj.get(name)  # None for a broken link
        if child is not None:
            node = _node(path, file, child)
            if node is not None:
                children[name] = node
    return MapAdapter(children, metadata=_attributes(file, obj))


def _session_node(entry: dict, others: dict, scan_groups: list[str]):
    from tiled.adapters.mapping import MapAdapter

    path = Path(entry["path"])
    with h5py.File(path, "r") as file:
        children = {}
        for name in file:
            child = file.get(name)
            node = _node(path, file, child) if child is not None else None
            if node is not None:
                children[name] = node
    return MapAdapter(children, metadata={**others, **entry, "scan_results": scan_groups})


def _key(relative: Path, taken: set[str]) -> str:
    key = KEY_SEPARATOR.join(relative.with_suffix("").parts)
    unique, n = key, 1
    while unique in taken:
        n += 1
        unique = f"{key}~{n}"
    taken.add(unique)
    return unique


def build_tree(folder: str | PathLike):
    """The Tiled tree of a folder of sessions (what :func:`serve` serves).

    Args:
        folder: searched recursively for ``*.h5`` session files.

    Returns:
        A ``tiled.adapters.mapping.MapAdapter``: one node per session (see the module
        docstring), metadata ``{"format": "pfmtwin.catalog", "folder": ..., "sessions": N}``.

    Raises:
        CatalogError: ``folder`` does not exist or is a file.
    """
    from tiled.adapters.mapping import MapAdapter

    root, found = _scan(folder)
    sessions, taken = {}, set()
    for entry, others, scan_groups in found:
        try:
            node = _session_node(entry, others, scan_groups)
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:  # changed since it was read
            logger.warning("pfmtwin catalog: warning: skipping %s: %s", entry["path"], exc)
            continue
        sessions[_key(Path(entry["path"]).relative_to(root), taken)] = node
    return MapAdapter(sessions, metadata={"format": "pfmtwin.catalog", "folder": str(root), "sessions": len(sessions)})


# -- serving ----------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    if not 0 <= port <= 65535:
        raise CatalogError(f"port {port!r} is outside 0..65535; pass 0 to take a free port")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise CatalogError(f"host {host!r} cannot be resolved ({exc}); pass an address, e.g. 127.0.0.1") from exc
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise CatalogError(
            f"cannot listen on {host!r} port {port!r} ({exc.strerror or exc}); choose another port, or 0 for a free one"
        ) from exc
    sock.setblocking(False)
    return sock


def _url(sock: socket.socket, api_key: str) -> str:
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/?api_key={api_key}"


def serve(
    folder: str | PathLike,
    host: str = DEFAULT_HOST,
    port: int = 0,
    *,
    api_key: str | None = None,
    out: IO[str] | None = None,
) -> None:
    """Serve a folder of sessions through Tiled until SIGTERM or SIGINT.

    Prints ``{"listening": URL}`` as one JSON line on ``out`` once the server accepts requests;
    URL carries the API key. Returns after a graceful shutdown (the signal is consumed, not
    re-raised). Must run in the main thread (it handles the signals).

    Args:
        folder: searched recursively for ``*.h5`` session files, once, at start.
        host: address to listen on; loopback by default. Any other address exposes the sessions,
            and the API key, over plain HTTP to the network: a warning says so.
        port: TCP port; 0 takes a free one.
        api_key: the single-user API key, alphanumeric; default a random 64-character one.
        out: where the JSON line goes (default ``sys.stdout``).

    Raises:
        CatalogError: ``folder`` does not exist, ``api_key`` is not alphanumeric, or the server
            cannot listen on ``host``/``port``.
    """
    import uvicorn
    from tiled.config import Authentication
    from tiled.server.app import build_app

    if api_key is None:
        api_key = secrets.token_hex(32)
    elif not (api_key.isascii() and api_key.isalnum()):
        raise CatalogError("the API key must be letters and digits only (Tiled puts it in URLs); "
                           "make one with: python -c 'import secrets; print(secrets.token_hex(32))'")
    out = sys.stdout if out is None else out
    tree = build_tree(folder)
    if not _is_loopback(host):
        logger.warning("pfmtwin catalog: warning: serving on %s, beyond loopback: the sessions and the API key travel in plain "
                       "HTTP to anyone who can reach this address", host)
    app = build_app(tree, Authentication(single_user_api_key=api_key))
    sock = _bind(host, port)
    url = _url(sock, api_key)

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            if self.started:
                print(json.dumps({"listening": url}), file=out, flush=True)

    config = uvicorn.Config(app, log_level="warning", access_log=False, log_config=_log_config())
    server = Server(config)

    def stop(signum, frame):  # before uvicorn takes the signals over, and after it gives them back
        server.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()


def _log_config() -> dict:
    """uvicorn's logging, every handler on stderr: stdout carries the JSON line only."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    for handler in config["handlers"].values():
        handler["stream"] = "ext://sys.stderr"
    return config


# -- command line -----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the catalog's arguments to a (sub)parser; :func:`command` runs them."""
    parser.add_argument("folder", type=Path, help="folder of session files (.h5), searched recursively")
    parser.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                        help=f"print the sessions whose KEY equals VALUE and exit; repeatable (all must hold); "
                             f"KEY: {', '.join(FIELDS)}")
    parser.add_argument("--list", action="store_true", help="print every session and exit")
    parser.add_argument("--table", action="store_true", help="with --where/--list: an aligned table, not JSON lines")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"serve on this address (default: {DEFAULT_HOST}, loopback only)")
    parser.add_argument("--port", type=int, default=0, help="serve on this TCP port (default: 0, a free one)")
    parser.set_defaults(func=command)


def _table(entries: list[dict]) -> str:
    columns = ("sample", "investigator", "project", "material", "seed", "day", "scans", "pulses", "created", "path")
    rows = [list(columns)] + [[_text(e[c]) for c in columns] for e in entries]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def command(args: argparse.Namespace) -> int:
    """Run the catalog command: list/search (``--where``, ``--list``) or serve.

    Returns:
        0. Errors are raised as :class:`CatalogError` (the caller prints them, exit status 2).
    """
    if args.where or args.list:
        entries = search(args.folder, args.where)
        if args.table:
            print(_table(entries))
        else:
            for entry in entries:
                print(json.dumps(entry))
        return 0
    serve(args.folder, host=args.host, port=args.port)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m scenarios.catalog``: the catalog command on its own."""
    parser = argparse.ArgumentParser(prog="python -m scenarios.catalog",
                                     description="List, search or serve (through Tiled) a folder of pfmtwin sessions.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except PfmTwinError as exc:
        print(f"pfmtwin: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
