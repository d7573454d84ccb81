"""Session recording: every command sent to a microscope, with its instrument time and result, in
one HDF5 file.

>>> import control
>>> from control.recording import Recorder, read_session
>>> scope = Recorder(control.connect("twin://?seed=1"), "run.h5", metadata={"sample": "A7"})  # doctest: +SKIP
>>> with scope:  # doctest: +SKIP
...     scope.apply_pulse(1e-6, 1e-6, 5.0, 1e-3)
>>> read_session("run.h5").pulses()  # doctest: +SKIP

Layout (NSID conventions for raster images, so sidpy and SciFiReaders users open the scans, and
``control.nsid.read_scan`` reads a session holding one raster scan). Every number is an HDF5
number, and every dimensioned one has a ``<name>_units`` attribute beside it (SI: m, s, V, Hz,
m/s; counts have none); structured values are groups of attributes, as pyNSID writes metadata, so
``sidpy.hdf.hdf_utils.h5_group_to_dict`` reads them as nested dicts::

    /                          attrs: format, format_version (2), sample, material, investigator,
    |                                 project, instrument, software_version, seed, backend,
    |                                 backend_url, protocol_version, created (ISO 8601), <user keys>
    ├── hardware/              attrs: every HardwareSpec field, e.g. scan_range, scan_range_units="m"
    |   └── registers/         attrs: register name -> address
    ├── limits/                attrs: every SafetyLimits field, e.g. bias_max, bias_max_units="V"
    ├── options/               attrs: the backend's options, e.g. field, field_units="m"
    └── commands/
        ├── 000000/            attrs: index, verb, start, start_units="s", end, end_units="s"
        |   |                         (instrument time), [error_type, error_message], complete
        |   ├── args/          attrs: the arguments, e.g. x, x_units="m", speed (an empty attribute
        |   |   |                     for None); a value no attribute can hold as its repr
        |   |   └── spec/      a ScanSpec: center, center_units="m", size, pixels, line_rate, ...
        |   └── result/        attrs: kind ("ScanResult" | "PulseRecord" | "InstrumentInfo" | "json")
        |       |                     PulseRecord: its fields, e.g. amplitude, amplitude_units="V";
        |       |                     InstrumentInfo: backend, url, ... and hardware/, limits/,
        |       |                     options/, option_units/ groups as above;
        |       |                     a scan is written by control.nsid.write_scan_group:
        |       ├── height     (lines, points) m; raster: data_type="IMAGE", dims[0]=y, dims[1]=x
        |       ├── amplitude  (lines, points) m
        |       ├── phase      (lines, points) deg
        |       ├── x, y       raster: 1D dimension scales, m; spiral: 2D positions, m
        |       └── line_times (lines,) s
        └── 000001/ ...

Format version 1 (before units) stored hardware, limits, options, args and InstrumentInfo
results as JSON strings and numbers without units; :func:`read_session` still reads it.

Crash safety: the file is flushed after every record, so killing the recording process loses at
most the record in flight (a record without its ``complete`` attribute is reported in
``Session.incomplete``, never returned). The file is written with ``libver=("v108", "latest")``:
newest group and attribute formats, but superblock v2, because the superblock v3 that a v110+ low
bound brings keeps an "open for write" flag after a kill -9, and HDF5 then refuses to open the file
until ``h5clear -s`` is run on it.

SWMR is not used: NSID needs one dataset (with its dimension scales) per image, created when the
image arrives, and an SWMR writer may not create objects. So the file is read once the recorder is
closed (or its process has died); HDF5 file locking keeps other processes out while it is open.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from os import PathLike
from pathlib import Path

import h5py
import numpy as np

from control.contract import InstrumentInfo, LineCallback, Microscope, PulseRecord, ScanResult, ScanSpec
from control.errors import InstrumentError, InvalidArgumentError, PfmTwinError, RecordingError
from control.hardware import HardwareSpec
from control.limits import SafetyLimits, shown
from control.nsid import CHANNEL_UNITS, NSID_VERSION, write_scan_group  # noqa: F401 (re-exported)

FORMAT = "pfmtwin.session"
#: 2: units beside every dimensioned number, structured values as groups (1: JSON strings).
FORMAT_VERSION = 2

#: Lowest HDF5 format version written. "latest" link and attribute storage, but superblock v2:
#: from low bound v110 on, HDF5 writes superblock v3, whose "open for write" flag survives a
#: kill -9 and makes the library refuse to open the file until ``h5clear`` is run on it.
LIBVER = ("v108", "latest")

#: Metadata every session carries; the values are the defaults.
STANDARD_METADATA = {"sample": "", "material": "PbTiO3", "investigator": "", "project": ""}

#: Metadata filled in by the recorder (from the instrument); callers may not set these keys.
RESERVED_METADATA = frozenset(
    {
        "format",
        "format_version",
        "instrument",
        "software_version",
        "seed",
        "backend",
        "backend_url",
        "protocol_version",
        "hardware",
        "limits",
        "options",
        "created",
    }
)
_JSON_METADATA = ("hardware", "limits", "options")
#: SI unit of each argument of the recorded verbs (a scan's ``spec`` is a group with its own).
ARGUMENT_UNITS = {"x": "m", "y": "m", "speed": "m/s", "amplitude": "V", "width": "s", "spec": ScanSpec.UNITS}
#: Suffix of the attribute holding the unit of the attribute it is named after.
UNITS_SUFFIX = "_units"

# -- plain-data helpers -----------------------------------------------------------------------


def _plain(value: object) -> object:
    """JSON fallback: numpy scalars and arrays, contract dataclasses, else ``repr``."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (ScanSpec, InstrumentInfo)):
        return value.to_dict()
    # A rejected command may carry any object; its repr is what the user passed.
    return repr(value)


def _dumps(value: object) -> str:
    return json.dumps(value, default=_plain)


def _attribute(value: object) -> object:
    """``value`` as an HDF5 attribute value: numbers, strings, flags, numeric arrays; None as an
    empty attribute; anything else (a huge int, a list of strings, an object) as its repr."""
    if value is None:
        return h5py.Empty("f8")
    if isinstance(value, (bool, np.bool_, str)):
        return value
    if isinstance(value, numbers.Integral) and -(2**63) <= int(value) < 2**63:
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        try:
            return float(value)
        except OverflowError:
            return shown(value)
    array = None
    if isinstance(value, np.ndarray):
        array = value
    elif isinstance(value, (list, tuple)) and not any(isinstance(v, (list, tuple, np.ndarray)) for v in value):
        array = np.asarray(value)  # a list with a huge int or a str is an object or str array: its repr
    if array is not None and array.ndim == 1 and array.size and array.dtype.kind in "biuf":
        return array
    return shown(value)


def _write_attributes(group: h5py.Group, values: Mapping, units: Mapping) -> None:
    """Write ``values`` as attributes of ``group``, each dimensioned one with its ``<name>_units``.

    A mapping value becomes a subgroup (with the units ``units[name]``, if that is a mapping);
    a ScanSpec or an InstrumentInfo its ``to_dict()``.
    """
    for name, value in values.items():
        name, unit = str(name), units.get(name, "")
        if isinstance(value, (ScanSpec, InstrumentInfo)):
            value = value.to_dict()
        if isinstance(value, Mapping):
            _write_attributes(group.create_group(name), value, unit if isinstance(unit, Mapping) else {})
            continue
        stored = _attribute(value)
        group.attrs[name] = stored
        # A number has a unit; a flag, a repr or None does not.
        number = isinstance(stored, (int, float)) and not isinstance(stored, bool)
        if isinstance(unit, str) and unit and (number or isinstance(stored, np.ndarray) and stored.dtype.kind in "iuf"):
            group.attrs[name + UNITS_SUFFIX] = unit


def _plain_attribute(value: object) -> object:
    """An attribute as plain data: arrays as lists, numpy scalars as Python ones, empty as None."""
    if isinstance(value, h5py.Empty):
        return None
    if isinstance(value, np.ndarray):
        return value.tolist()
    return _scalar(value)


def _read_attributes(group: h5py.Group, skip: tuple[str, ...] = ()) -> dict:
    """Inverse of :func:`_write_attributes`: the values (without their units) and subgroups as dicts."""
    attrs = group.attrs
    out = {
        name: _plain_attribute(attrs[name])
        for name in attrs
        if name not in skip and not (name.endswith(UNITS_SUFFIX) and name.removesuffix(UNITS_SUFFIX) in attrs)
    }
    out.update({name: _read_attributes(sub) for name, sub in group.items() if isinstance(sub, h5py.Group)})
    return out


def _scalar(value: object) -> object:
    """An HDF5 attribute value as a Python scalar (str, int, float)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _check_metadata(metadata: Mapping | None) -> dict:
    """Return the standard metadata updated with ``metadata``, or raise naming the bad key."""
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise InvalidArgumentError(
            f"metadata={metadata!r} is a {type(metadata).__name__}; pass a dict of str -> str or number"
        )
    out = dict(STANDARD_METADATA)
    for key, value in metadata.items():
        if not isinstance(key, str) or not key:
            raise InvalidArgumentError(f"metadata key {key!r} must be a non-empty str")
        if key in RESERVED_METADATA:
            raise InvalidArgumentError(
                f"metadata key {key!r} is filled in by the recorder from the instrument; "
                f"use another name, e.g. 'user_{key}'"
            )
        if isinstance(value, bool) or not isinstance(value, (str, numbers.Real)):
            raise InvalidArgumentError(
                f"metadata[{key!r}]={value!r} is a {type(value).__name__}; pass a str or a number "
                f"(encode structured values as a JSON string)"
            )
        out[key] = _scalar(value)
    return out


# -- writing ----------------------------------------------------------------------------------


def _write_result(group: h5py.Group, result: object, source: str) -> None:
    if isinstance(result, ScanResult):
        # The one NSID writer, shared with control.nsid.write_scan.
        write_scan_group(group, result, source)
    elif isinstance(result, PulseRecord):
        group.attrs["kind"] = "PulseRecord"
        _write_attributes(group, {f.name: getattr(result, f.name) for f in fields(PulseRecord)}, PulseRecord.UNITS)
    elif isinstance(result, InstrumentInfo):
        group.attrs["kind"] = "InstrumentInfo"
        _write_attributes(group, result.to_dict(), _info_units(result))
    else:
        group.attrs["kind"] = "json"
        group.attrs["json"] = _dumps(result)


def _info_units(info: InstrumentInfo) -> dict:
    """Units of ``info.to_dict()``: of its hardware, limits and options."""
    return {"hardware": HardwareSpec.UNITS, "limits": SafetyLimits.UNITS, "options": dict(info.option_units)}


def _create_file(path: Path, overwrite: bool) -> h5py.File:
    fix = "choose another path or pass overwrite=True"
    if path.exists() and not overwrite:
        raise RecordingError(f"session file {str(path)!r} already exists; {fix}")
    try:
        # Mode "x" fails if the file appeared since the check above: never overwrite silently.
        return h5py.File(path, "w" if overwrite else "x", libver=LIBVER)
    except FileExistsError as exc:
        raise RecordingError(f"session file {str(path)!r} already exists; {fix}") from exc
    except OSError as exc:
        raise RecordingError(
            f"cannot create session file {str(path)!r}: {exc}; check that its directory exists and "
            f"is writable and that no other program has the file open"
        ) from exc


class Recorder:
    """A microscope that records every command, its instrument time and its result to HDF5.

    Wraps any :class:`control.Microscope` (usually the one ``control.connect(url)`` returns) and is
    one itself, so control code runs unchanged with or without recording. ``info``, ``move_tip``,
    ``scan`` and ``apply_pulse`` are recorded, including the ones the microscope rejects (the
    exception is recorded, then re-raised unchanged); ``now`` is a clock read and is not.

    The recorder owns the microscope once constructed: closing the recorder closes it. If the
    constructor raises, the microscope is left open and still belongs to the caller.

    Args:
        microscope: the microscope to drive.
        path: the session file to create, ``.h5``.
        metadata: ``sample``, ``material`` (default ``"PbTiO3"``), ``investigator``, ``project``
            and any other keys, each a str or a number.
        overwrite: replace an existing file at ``path``.

    Raises:
        InvalidArgumentError: a metadata key or value of the wrong type, or a key the recorder
            fills in itself (see ``RESERVED_METADATA``).
        RecordingError: ``path`` exists (and ``overwrite`` is false) or cannot be created.
    """

    def __init__(
        self,
        microscope: Microscope,
        path: str | PathLike,
        *,
        metadata: Mapping | None = None,
        overwrite: bool = False,
    ) -> None:
        meta = _check_metadata(metadata)
        if not isinstance(overwrite, bool):
            raise InvalidArgumentError(f"overwrite={overwrite!r} must be True or False")
        path = Path(path)
        info = microscope.info()
        # Imported here: control/__init__.py imports this module before it defines __version__.
        from control import __version__

        meta.update(
            format=FORMAT,
            format_version=FORMAT_VERSION,
            instrument=info.identity,
            software_version=__version__,
            backend=info.backend,
            backend_url=info.url,
            protocol_version=info.protocol_version,
            # Wall-clock time is file metadata here, never physics.
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        if "seed" in info.options:
            meta["seed"] = _scalar(info.options["seed"])
        file = _create_file(path, overwrite)
        try:
            file.attrs.update(meta)
            described = info.to_dict()
            _write_attributes(file, {name: described[name] for name in _JSON_METADATA}, _info_units(info))
            self._commands = file.create_group("commands")
            file.flush()
        except Exception as exc:
            file.close()
            raise RecordingError(f"cannot write the header of session file {str(path)!r}: {exc}") from exc
        self._file = file
        self._path = path
        self._scope = microscope
        self._source = f"pfmtwin {__version__}: {info.identity}"
        self._count = 0
        self._closed = False

    @property
    def path(self) -> Path:
        """The session file."""
        return self._path

    # -- recording --------------------------------------------------------------------------

    def _live(self) -> Microscope:
        if self._closed:
            raise InstrumentError(
                f"the recorder of {str(self._path)!r} is closed; open a new microscope with "
                f"control.connect(url) and a new Recorder"
            )
        return self._scope

    def _clock(self) -> float:
        """Instrument time, s; NaN when the instrument cannot tell (closed, link lost)."""
        try:
            return float(self._scope.now())
        except PfmTwinError:
            # The command itself will fail the same way, and that failure is what gets recorded.
            return float("nan")

    def _call(self, verb: str, args: dict, command: Callable[[], object]) -> object:
        self._live()
        start = self._clock()
        try:
            result = command()
        except Exception as exc:
            self._record(verb, args, start, self._clock(), None, exc)
            raise
        self._record(verb, args, start, self._clock(), result, None)
        return result

    def _record(
        self, verb: str, args: dict, start: float, end: float, result: object, error: Exception | None
    ) -> None:
        name = f"{self._count:06d}"
        try:
            group = self._commands.create_group(name)
            group.attrs.update(index=self._count, verb=verb)
            _write_attributes(group, {"start": start, "end": end}, {"start": "s", "end": "s"})
            _write_attributes(group.create_group("args"), args, ARGUMENT_UNITS)
            if error is not None:
                group.attrs.update(error_type=type(error).__name__, error_message=str(error))
            if result is not None:
                _write_result(group.create_group("result"), result, self._source)
            # Written last: a record without it was in flight when the writer died.
            group.attrs["complete"] = True
            self._file.flush()
        except Exception as exc:
            raise RecordingError(
                f"cannot record command {self._count} ({verb}) to {str(self._path)!r}: {exc}; "
                f"the instrument executed it, but the session file is now incomplete"
            ) from exc
        self._count += 1

    # -- the Microscope protocol --------------------------------------------------------------

    def info(self) -> InstrumentInfo:
        """Identity, versions, hardware spec and the limits in force (recorded)."""
        return self._call("info", {}, self._scope.info)

    def move_tip(self, x: float, y: float, *, speed: float | None = None) -> None:
        """Move the tip to (x, y), m, at ``speed`` m/s (default: the fastest allowed)."""
        self._call(
            "move_tip", {"x": x, "y": y, "speed": speed}, lambda: self._scope.move_tip(x, y, speed=speed)
        )

    def scan(self, spec: ScanSpec, *, on_line: LineCallback | None = None) -> ScanResult:
        """Acquire an image described by ``spec`` and record it (``on_line`` as in ``Guarded.scan``)."""
        return self._call("scan", {"spec": spec}, lambda: self._scope.scan(spec, on_line=on_line))

    def apply_pulse(self, x: float, y: float, amplitude: float, width: float) -> PulseRecord:
        """Move to (x, y), m, and apply a bias pulse of ``amplitude`` V for ``width`` s."""
        return self._call(
            "apply_pulse",
            {"x": x, "y": y, "amplitude": amplitude, "width": width},
            lambda: self._scope.apply_pulse(x, y, amplitude, width),
        )

    def now(self) -> float:
        """Instrument time, s (not recorded)."""
        return self._live().now()

    def close(self) -> None:
        """Close the microscope, then the session file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._scope.close()
        finally:
            self._file.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- reading ----------------------------------------------------------------------------------


@dataclass
class Command:
    """One recorded command.

    Attributes:
        index: position in the session, from 0.
        verb: "info", "move_tip", "scan" or "apply_pulse".
        args: the arguments as plain data (a ScanSpec as its ``to_dict()``; values the
            microscope refused to accept as their ``repr``).
        start: instrument time before the command, s (NaN if the instrument could not tell).
        end: instrument time after the command, s.
        result: a ``ScanResult``, a ``PulseRecord``, a dict (``InstrumentInfo.to_dict()``) or None.
        error: None, or (exception type name, message) of a command the microscope rejected.
    """

    index: int
    verb: str
    args: dict
    start: float
    end: float
    result: object = None
    error: tuple[str, str] | None = None

    @property
    def ok(self) -> bool:
        """Whether the microscope executed the command."""
        return self.error is None


@dataclass
class Session:
    """A recorded session, as read back by :func:`read_session`.

    Attributes:
        path: the session file.
        metadata: file-level metadata; ``hardware``, ``limits`` and ``options`` as dicts.
        commands: every complete record, in order.
        incomplete: indices of records cut short by a crash of the writer (the one in flight),
            including an entry whose object never reached the disk.
    """

    path: Path
    metadata: dict
    commands: list[Command]
    incomplete: list[int] = field(default_factory=list)

    def scans(self) -> list[ScanResult]:
        """Every acquired image, in order."""
        return [c.result for c in self.commands if isinstance(c.result, ScanResult)]

    def pulses(self) -> list[PulseRecord]:
        """Every emitted pulse, in order."""
        return [c.result for c in self.commands if isinstance(c.result, PulseRecord)]


def _read_scan(group: h5py.Group) -> ScanResult:
    spec = ScanSpec(**json.loads(group.attrs["spec"]))
    channels = {name: group[name][()] for name in json.loads(group.attrs["channels"])}
    x, y = group["x"][()], group["y"][()]
    if group.attrs["layout"] == "image":
        x = np.broadcast_to(x, spec.shape).copy()
        y = np.broadcast_to(y[:, None], spec.shape).copy()
    return ScanResult(spec=spec, channels=channels, x=x, y=y, line_times=group["line_times"][()])


def _read_result(group: h5py.Group) -> object:
    kind = group.attrs["kind"]
    if kind == "ScanResult":
        return _read_scan(group)
    if kind == "PulseRecord":
        return PulseRecord(**{f.name: _scalar(group.attrs[f.name]) for f in fields(PulseRecord)})
    if kind in ("InstrumentInfo", "json") and "json" in group.attrs:  # format 1, or a plain result
        return json.loads(group.attrs["json"])
    if kind == "InstrumentInfo":
        return _read_attributes(group, skip=("kind",))
    raise RecordingError(
        f"result {group.name!r} has unknown kind {kind!r}; read the file with the pfmtwin that wrote it"
    )


def _read_command(group: h5py.Group) -> Command:
    attrs = group.attrs
    error = None
    if "error_type" in attrs:
        error = (str(attrs["error_type"]), str(attrs["error_message"]))
    return Command(
        index=int(attrs["index"]),
        verb=str(attrs["verb"]),
        args=_read_attributes(group["args"]) if "args" in group else json.loads(attrs["args"]),
        start=float(attrs["start"]),
        end=float(attrs["end"]),
        result=_read_result(group["result"]) if "result" in group else None,
        error=error,
    )


def read_session(path: str | PathLike) -> Session:
    """Read a session file written by :class:`Recorder`, also one whose writer was killed.

    Args:
        path: the session file.

    Returns:
        The session; ScanResult arrays equal the recorded ones bit for bit.

    Raises:
        RecordingError: the file is missing, unreadable, still open in a recorder, or not a
            pfmtwin session.
    """
    path = Path(path)
    try:
        file = h5py.File(path, "r")
    except FileNotFoundError as exc:
        raise RecordingError(f"no session file at {str(path)!r}; check the path") from exc
    except OSError as exc:
        raise RecordingError(
            f"cannot open session file {str(path)!r}: {exc}; if a Recorder is still writing it, "
            f"read it after the recorder is closed"
        ) from exc
    with file:
        if file.attrs.get("format") != FORMAT:
            raise RecordingError(
                f"{str(path)!r} is not a pfmtwin session (format={file.attrs.get('format')!r}, "
                f"expected {FORMAT!r}); open it with h5py instead"
            )
        version = _scalar(file.attrs.get("format_version"))
        if version not in (1, FORMAT_VERSION):
            raise RecordingError(
                f"{str(path)!r} has format_version {version!r}; this pfmtwin reads 1 and {FORMAT_VERSION}: "
                f"upgrade pfmtwin to read it"
            )
        metadata = {key: _scalar(value) for key, value in file.attrs.items()}
        for key in _JSON_METADATA:
            metadata[key] = json.loads(metadata[key]) if version == 1 else _read_attributes(file[key])
        commands, incomplete = [], []
        records = file["commands"]
        for name in sorted(records, key=int):
            try:
                record = records[name]
                command = _read_command(record) if record.attrs.get("complete", False) else None
            except (KeyError, OSError, RuntimeError, ValueError):
                # A writer killed mid-record can leave an entry whose object never reached the
                # disk (HDF5: "addr overflow"): it was in flight, so it is incomplete.
                command = None
            if command is None:
                incomplete.append(int(name))
            else:
                commands.append(command)
    return Session(path=path, metadata=metadata, commands=commands, incomplete=incomplete)
