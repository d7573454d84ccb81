"""PFM images in NSID files: read real and twin scans as the contract's ``ScanResult``, write one.

NSID is pycroscopy's HDF5 layout for images and spectra (written and read by sidpy, pyNSID and
SciFiReaders). An NSID image is a 2D HDF5 dataset with the attributes ``data_type="IMAGE"``,
``quantity``, ``units``, ``main_data_name``, ``modality``, ``source``, ``pyNSID_version`` and
``DIMENSION_LABELS``, and one 1D dimension scale per axis (here ``x`` and ``y``, m) beside it.
Reading needs only h5py:

>>> from control.nsid import read_image, read_scan, write_scan
>>> scan = read_scan("tests/data/pfm-real/PTO_Funakubo0001.h5")     # doctest: +SKIP
>>> scan.amplitude.shape, scan.spec.size                             # doctest: +SKIP
((256, 256), (1.0039e-06, 1.0039e-06))
>>> read_image("tests/data/pfm-real/PTO_Funakubo0001.h5").passes     # doctest: +SKIP
{'height': 'retrace', 'amplitude': 'retrace', 'phase': 'retrace', 'deflection': 'retrace'}
>>> write_scan("scan.h5", scan, metadata={"sample": "A7"})           # doctest: +SKIP

Layout written by :func:`write_scan` (in ``/scan``) and, for every scan of a session, by
``control.recording.Recorder`` (in ``commands/NNNNNN/result``); both go through
:func:`write_scan_group`::

    <group>        attrs: kind="ScanResult", spec (JSON), channels (JSON), layout ("image" | "points")
    ├── height     (lines, points) m; raster: an NSID image, DIMENSION_LABELS ["y", "x"]
    ├── amplitude  (lines, points) m      (and phase, deg; with retrace the *_retrace channels)
    ├── x, y       raster: 1D dimension scales, m; any other path: 2D positions, m (not NSID)
    ├── line_times (lines,) s
    └── metadata/  (write_scan only) attrs: the caller's metadata; sidpy reads it as .metadata

Reading (:func:`read_image`) takes every NSID image in the file as one channel of one scan,
whichever program wrote it. Axis order follows ``DIMENSION_LABELS``: Asylum files converted by
sidpy store ``["x", "y"]`` (axis 0 is the fast-scan axis), the contract wants (lines, points) =
(y, x), so such images are transposed. Files written by pfmtwin also carry the exact
``ScanSpec`` and the line times; for other files both are derived from the scales and the
instrument's scan rate.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import h5py
import numpy as np

from control.contract import CHANNELS, ScanResult, ScanSpec
from control.errors import InvalidArgumentError, PfmTwinError, RecordingError

#: NSID quantity and SI unit of each contract channel (the "_retrace" variants share them).
CHANNEL_UNITS = {
    "height": ("height", "m"),
    "amplitude": ("piezoresponse amplitude", "m"),
    "phase": ("piezoresponse phase", "deg"),
}
#: NSID convention version written (pyNSID reads ``pyNSID_version``; older tools ``nsid_version``).
NSID_VERSION = "0.0.7"
#: Root attribute ``format`` of a file written by :func:`write_scan`.
SCAN_FORMAT = "pfmtwin.scan"

#: Factor to SI of each accepted unit: lengths to m, angles to deg, the rest kept as they are.
LENGTH_UNITS = {"m": 1.0, "mm": 1e-3, "um": 1e-6, "µm": 1e-6, "μm": 1e-6, "nm": 1e-9, "pm": 1e-12}
ANGLE_UNITS = {"deg": 1.0, "degree": 1.0, "degrees": 1.0, "°": 1.0, "rad": 180.0 / math.pi}
OTHER_UNITS = {"V": 1.0, "A": 1.0, "N": 1.0, "Hz": 1.0, "s": 1.0, "": 1.0, "a.u.": 1.0}
_FACTORS = {**LENGTH_UNITS, **ANGLE_UNITS, **OTHER_UNITS}
#: What each contract channel must be measured in.
_REQUIRED_UNITS = {"height": LENGTH_UNITS, "amplitude": LENGTH_UNITS, "phase": ANGLE_UNITS}
#: Instrument metadata keys holding the line rate, Hz (Asylum: one trace + retrace per period).
SCAN_RATE_KEYS = ("ScanRate",)

VALID = (
    "a valid file holds 2D HDF5 datasets with attrs data_type='IMAGE', quantity, units (m, nm or "
    "pm for height and amplitude; deg or rad for phase) and DIMENSION_LABELS ['y', 'x'] or "
    "['x', 'y'], each axis with an attached 1D dimension scale in m; at least an amplitude and a "
    "phase image, all of one shape"
)


class NsidError(PfmTwinError, ValueError):
    """A file is not a readable NSID PFM image, or a scan cannot be written as one."""


@dataclass
class NsidImage:
    """A scan read from an NSID file.

    Attributes:
        path: the file.
        result: the scan in the contract's terms: arrays (lines, points), SI units, phase in deg.
        passes: result channel name -> "trace" or "retrace", the pass it was measured on (an
            Asylum "AmplitudeRetrace" alone becomes channel "amplitude" with pass "retrace").
        metadata: attributes of the ``original_metadata`` and ``metadata`` groups beside the
            amplitude image (the instrument's settings, or write_scan's metadata), as plain
            Python values.
    """

    path: Path
    result: ScanResult
    passes: dict[str, str]
    metadata: dict


# -- writing ----------------------------------------------------------------------------------


def _image_axes(result: ScanResult) -> tuple[np.ndarray, np.ndarray] | None:
    """The 1D x and y axes of a raster scan whose positions are an exact grid, else None."""
    x, y = np.asarray(result.x), np.asarray(result.y)
    if result.spec.path != "raster" or x.ndim != 2 or y.shape != x.shape:
        return None
    xs, ys = x[0, :], y[:, 0]
    # Compare bytes, not values: readers rebuild the grids from the axes bit for bit.
    if x.tobytes() != np.broadcast_to(xs, x.shape).tobytes():
        return None
    if y.tobytes() != np.broadcast_to(ys[:, None], y.shape).tobytes():
        return None
    return xs, ys


def write_scan_group(group: h5py.Group, result: ScanResult, source: str) -> None:
    """Write one scan into an empty HDF5 group in pfmtwin's NSID layout (see the module doc).

    A raster scan on an exact grid becomes NSID images; any other scan (a spiral, measured
    positions off the grid) keeps its 2D positions and is readable only by pfmtwin.

    Args:
        group: the group to fill.
        result: the scan.
        source: NSID ``source`` attribute: the program and instrument that produced the scan.
    """
    group.attrs["kind"] = "ScanResult"
    group.attrs["spec"] = json.dumps(result.spec.to_dict())
    group.attrs["channels"] = json.dumps(list(result.channels))
    axes = _image_axes(result)
    group.attrs["layout"] = "image" if axes is not None else "points"
    if axes is not None:
        scales = []
        for name, values in zip(("y", "x"), reversed(axes)):
            scale = group.create_dataset(name, data=values)
            scale.attrs.update(
                name=name, quantity=name, units="m", dimension_type="SPATIAL", nsid_version=NSID_VERSION
            )
            scale.make_scale(name)
            scales.append(scale)
    else:
        for name, values in (("x", result.x), ("y", result.y)):
            group.create_dataset(name, data=values).attrs.update(quantity=name, units="m")
    for name, data in result.channels.items():
        dset = group.create_dataset(name, data=data)
        quantity, units = CHANNEL_UNITS.get(name.removesuffix("_retrace"), (name, ""))
        dset.attrs.update(quantity=quantity, units=units)
        if axes is not None:
            dset.attrs.update(
                data_type="IMAGE",
                modality="PFM",
                source=source,
                main_data_name=name,
                title=name,
                nsid_version=NSID_VERSION,
                pyNSID_version=NSID_VERSION,
            )
            for dim, scale in enumerate(scales):
                dset.dims[dim].label = scale.attrs["name"]  # written as DIMENSION_LABELS
                dset.dims[dim].attach_scale(scale)
    group.create_dataset("line_times", data=result.line_times).attrs.update(quantity="time", units="s")


def _check_metadata(metadata: Mapping | None) -> dict:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidArgumentError(f"metadata={metadata!r} is a {type(metadata).__name__}; pass a dict")
    for key, value in metadata.items():
        if not isinstance(key, str) or not key:
            raise InvalidArgumentError(f"metadata key {key!r} must be a non-empty str")
        if isinstance(value, bool) or not isinstance(value, (str, numbers.Real)):
            raise InvalidArgumentError(
                f"metadata[{key!r}]={value!r} is a {type(value).__name__}; pass a str or a number"
            )
    return dict(metadata)


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move the finished file into place: readers never see a half-written file."""
    exists = f"{str(path)!r} already exists; choose another path or pass overwrite=True"
    try:
        if overwrite:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)  # unlike a rename, refuses an existing path atomically
        except FileExistsError:
            raise RecordingError(exists) from None
        except OSError:  # no hard links on this file system (FAT, some network shares)
            if path.exists():
                raise RecordingError(exists) from None
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_scan(
    path: str | PathLike, result: ScanResult, *, metadata: Mapping | None = None, overwrite: bool = False
) -> Path:
    """Write one raster scan as a standalone NSID file that sidpy and SciFiReaders open.

    The file is written to a temporary name beside ``path`` and renamed when complete. The same
    scan and metadata give the same bytes: nothing time-dependent is written unless it is in
    ``metadata``.

    Args:
        path: the file to create, ``.h5``.
        result: a raster scan (``spec.path == "raster"``) whose x, y are an exact grid, as every
            backend returns them.
        metadata: extra attributes (str -> str or number), e.g. ``{"sample": "A7"}``.
        overwrite: replace an existing file at ``path``.

    Returns:
        ``path``.

    Raises:
        NsidError: the scan is not a raster on an exact grid (NSID images need 1D x, y scales).
        InvalidArgumentError: ``result`` is not a ScanResult, or bad metadata.
        RecordingError: ``path`` exists (and ``overwrite`` is false) or cannot be written.
    """
    if not isinstance(result, ScanResult):
        raise InvalidArgumentError(f"result={result!r} is a {type(result).__name__}; pass a ScanResult")
    meta = _check_metadata(metadata)
    if _image_axes(result) is None:
        raise NsidError(
            f"cannot write {str(path)!r}: NSID images need a raster scan on an exact x, y grid, got "
            f"path={result.spec.path!r} with positions off the grid; record such scans with "
            f"control.recording.Recorder instead"
        )
    path = Path(path)
    if path.exists() and not overwrite:
        raise RecordingError(f"{str(path)!r} already exists; choose another path or pass overwrite=True")
    # Imported here: control/__init__.py imports this module before it defines __version__.
    from control import __version__

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(tmp, "w") as file:
            file.attrs.update(format=SCAN_FORMAT, format_version=1)
            group = file.create_group("scan")
            write_scan_group(group, result, f"pfmtwin {__version__}")
            if meta:
                group.create_group("metadata").attrs.update(meta)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise RecordingError(
            f"cannot write {str(path)!r}: {exc}; check that its directory exists and is writable"
        ) from exc
    _publish(tmp, path, overwrite)
    return path


# -- reading ----------------------------------------------------------------------------------


def _text(attrs: h5py.AttributeManager, key: str) -> str | None:
    value = attrs.get(key)
    if isinstance(value, bytes):
        return value.decode()
    return None if value is None else str(value)


def _plain(value: object) -> object:
    """An HDF5 attribute value as plain Python (str, int, float, list)."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _group_dict(group: h5py.Group) -> dict:
    out = {key: _plain(value) for key, value in group.attrs.items()}
    out.update({key: _group_dict(sub) for key, sub in group.items() if isinstance(sub, h5py.Group)})
    return out


def _channel(quantity: str, main_data_name: str) -> tuple[str, str]:
    """(channel base name, pass) of an image, e.g. ("amplitude", "retrace") for AmplitudeRetrace."""
    q, m = quantity.lower(), main_data_name.lower()
    scan_pass = "retrace" if q.endswith("retrace") or m.endswith("retrace") else "trace"
    for text in (q, m):  # pfmtwin writes quantity "piezoresponse amplitude", name "amplitude_retrace"
        for word in CHANNELS:
            if word in text:
                return word, scan_pass
    name = "_".join(re.findall(r"[a-z0-9]+", q))
    return re.sub(r"_?(re)?trace$", "", name) or name, scan_pass


@dataclass
class _Image:
    """One NSID image as found, in (lines, points) order but not yet in SI units."""

    dset: str
    base: str
    scan_pass: str
    data: np.ndarray
    units: str
    xs: np.ndarray
    ys: np.ndarray
    axis_units: tuple[str, str]


def _load(path: Path, dset: h5py.Dataset) -> _Image:
    where = f"{str(path)!r}, image {dset.name!r}"
    attrs = {key: _text(dset.attrs, key) for key in ("quantity", "units", "main_data_name")}
    for key in ("quantity", "units"):
        if attrs[key] is None:
            raise NsidError(f"{where} has no {key!r} attribute; {VALID}")
    if dset.ndim != 2:
        raise NsidError(f"{where} has shape {dset.shape}, not 2D; {VALID}")
    labels = [dim.label.lower() for dim in dset.dims]
    if sorted(labels) != ["x", "y"]:
        raise NsidError(f"{where} has DIMENSION_LABELS {labels!r}; {VALID}")
    scales = []
    for axis, dim in enumerate(dset.dims):
        if len(dim) == 0:
            raise NsidError(f"{where}: axis {axis} ({labels[axis]!r}) has no dimension scale attached; {VALID}")
        scale = dim[0]
        if scale.shape != (dset.shape[axis],):
            raise NsidError(
                f"{where}: scale {scale.name!r} has shape {scale.shape}, expected ({dset.shape[axis]},); {VALID}"
            )
        scales.append((scale[()], _text(scale.attrs, "units") or ""))
    data = dset[()]
    if labels == ["x", "y"]:  # axis 0 is the fast-scan axis: scan lines are columns
        data, scales = np.ascontiguousarray(data.T), scales[::-1]
    (ys, y_units), (xs, x_units) = scales
    base, scan_pass = _channel(attrs["quantity"], attrs["main_data_name"] or "")
    return _Image(dset.name, base, scan_pass, data, attrs["units"], xs, ys, (x_units, y_units))


def _si(values: np.ndarray, factor: float) -> np.ndarray:
    # Leave SI values untouched, so a pfmtwin file reads back bit for bit.
    return values if factor == 1.0 else values * factor


def _channels(path: Path, images: list[_Image]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Name the images as the contract does and convert them to SI; also the pass of each."""
    found: dict[tuple[str, str], _Image] = {}
    for image in images:
        key = (image.base, image.scan_pass)
        if key in found:
            raise NsidError(
                f"{str(path)!r} holds two {image.scan_pass} {image.base!r} images, {found[key].dset!r} "
                f"and {image.dset!r}; read_scan reads one scan per file (a pfmtwin session holds one "
                f"per command: read it with control.recording.read_session)"
            )
        found[key] = image
    names = {}
    for base, scan_pass in found:
        both = (base, "trace") in found and (base, "retrace") in found
        names[base, scan_pass] = f"{base}_retrace" if both and scan_pass == "retrace" else base
    order = {name: i for i, name in enumerate(CHANNELS)}
    channels, passes = {}, {}
    for key in sorted(names, key=lambda k: (names[k].endswith("_retrace"), order.get(k[0], len(order)), k[0])):
        image, name = found[key], names[key]
        allowed = _REQUIRED_UNITS.get(image.base, _FACTORS)
        if image.units not in allowed:
            raise NsidError(
                f"{str(path)!r}, image {image.dset!r} ({name}) is in units {image.units!r}; "
                f"accepted: {sorted(allowed)}"
            )
        channels[name], passes[name] = _si(image.data, _FACTORS[image.units]), image.scan_pass
    missing = [name for name in ("amplitude", "phase") if name not in channels]
    if missing:
        raise NsidError(f"{str(path)!r} has no {' or '.join(missing)} image (found {sorted(channels)}); {VALID}")
    return channels, passes


def _axes(path: Path, images: list[_Image]) -> tuple[np.ndarray, np.ndarray]:
    """The x and y axes, m, shared by every image."""
    shapes = {image.data.shape for image in images}
    if len(shapes) > 1:
        raise NsidError(f"{str(path)!r} holds images of different shapes {sorted(shapes)}; {VALID}")
    axes = []
    for i, axis in enumerate("xy"):
        values = [(image, (image.xs, image.ys)[i], image.axis_units[i]) for image in images]
        in_metres = [_si(v, LENGTH_UNITS[u]) for _, v, u in values if u in LENGTH_UNITS]
        if not in_metres:
            raise NsidError(f"{str(path)!r}: no image has its {axis} scale in a length unit; {VALID}")
        ref = in_metres[0]
        tol = 1e-6 * abs(ref[-1] - ref[0]) / max(len(ref) - 1, 1)
        for image, v, units in values:
            if units in LENGTH_UNITS:
                same = np.allclose(_si(v, LENGTH_UNITS[units]), ref, rtol=0, atol=tol)
            else:
                # sidpy's Asylum conversion labels the phase image's scales "deg": accept a scale
                # in another unit only if it holds the very metres of the other images' scales.
                same = np.array_equal(v, ref)
            if not same:
                raise NsidError(
                    f"{str(path)!r}, image {image.dset!r}: its {axis} scale ({units!r}) differs from "
                    f"the other images'; {VALID}"
                )
        axes.append(ref)
    return axes[0], axes[1]


def _pitch(path: Path, axis: str, values: np.ndarray) -> float:
    """Pixel pitch of a uniform, increasing scale, m."""
    pitch = (values[-1] - values[0]) / (len(values) - 1) if len(values) > 1 else 0.0
    if not pitch > 0 or not np.allclose(np.diff(values), pitch, rtol=1e-6, atol=0):
        raise NsidError(
            f"{str(path)!r}: the {axis} scale is not uniform and increasing over at least 2 pixels "
            f"({values[:3]!r}...); a ScanSpec describes uniform raster scans only"
        )
    return float(pitch)


def _line_rate(metadata: dict) -> float:
    """The instrument's line rate, Hz, if its metadata tells it, else 1 Hz (line_times in lines)."""
    for key in SCAN_RATE_KEYS:
        rate = metadata.get(key)
        if isinstance(rate, numbers.Real) and not isinstance(rate, bool) and math.isfinite(rate) and rate > 0:
            return float(rate)
    return 1.0


def _scan(path: Path, group: h5py.Group, images: list[_Image], channels: dict, metadata: dict) -> ScanResult:
    xs, ys = _axes(path, images)
    shape = (len(ys), len(xs))
    x, y = np.broadcast_to(xs, shape).copy(), np.broadcast_to(ys[:, None], shape).copy()
    if group.attrs.get("kind") == "ScanResult" and "spec" in group.attrs and "line_times" in group:
        # Written by pfmtwin: the exact spec and line times, which the scales cannot carry.
        spec = ScanSpec(**json.loads(group.attrs["spec"]))
        if spec.shape != shape:
            raise NsidError(
                f"{str(path)!r}: the spec in {group.name!r} has shape {spec.shape}, its images {shape}; {VALID}"
            )
        return ScanResult(spec=spec, channels=channels, x=x, y=y, line_times=group["line_times"][()])
    px, py = _pitch(path, "x", xs), _pitch(path, "y", ys)
    retrace = any(name.endswith("_retrace") for name in channels)
    period = 1.0 / _line_rate(metadata)  # one trace (+ retrace) line, s
    spec = ScanSpec(
        center=(float(xs[0] + xs[-1]) / 2, float(ys[0] + ys[-1]) / 2),
        size=(len(xs) * px, len(ys) * py),
        pixels=(len(xs), len(ys)),
        # The contract's line_rate counts trace lines; with retrace a line takes 2 / line_rate.
        line_rate=(2 if retrace else 1) / period,
        retrace=retrace,
    )
    return ScanResult(spec=spec, channels=channels, x=x, y=y, line_times=np.arange(len(ys)) * period)


def _open(path: Path) -> h5py.File:
    if not path.is_file():
        raise NsidError(f"no file at {str(path)!r}; check the path")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise NsidError(
            f"{str(path)!r} is not an HDF5 file or cannot be opened ({exc}); if a program is still "
            f"writing it, read it once closed; {VALID}"
        ) from exc


def read_image(path: str | PathLike) -> NsidImage:
    """Read every NSID image of a file as the channels of one scan.

    Channels are named by their ``quantity`` (case-insensitive): "height", "amplitude",
    "phase", else the quantity in lower case without "Trace"/"Retrace" (Asylum's
    "DeflectionRetrace" -> "deflection"). A channel measured on one pass only keeps the plain
    name; with both passes, the retrace one is "<name>_retrace". Values are converted to SI
    (m; phase in deg). Files not written by pfmtwin get ``spec.center`` and ``spec.size`` from
    the x, y scales (size = pixels x pitch), ``spec.line_rate`` from the instrument's
    ``ScanRate`` (else 1 Hz), and line times from the line rate, starting at 0 s.

    Args:
        path: an HDF5 file with NSID images, e.g. one written by sidpy or by :func:`write_scan`.

    Returns:
        The scan, the pass of each channel and the instrument metadata.

    Raises:
        NsidError: the file is missing or not HDF5, holds no NSID image, no amplitude or phase
            image, images of different shapes or grids, units it cannot convert, or the same
            channel twice.
    """
    path = Path(path)
    with _open(path) as file:
        found: list[h5py.Dataset] = []

        def collect(_: str, obj: h5py.HLObject) -> None:
            if isinstance(obj, h5py.Dataset) and _text(obj.attrs, "data_type") == "IMAGE":
                found.append(obj)

        file.visititems(collect)
        if not found:
            raise NsidError(f"{str(path)!r} holds no NSID image; {VALID}")
        images = [_load(path, dset) for dset in found]
        channels, passes = _channels(path, images)
        home = next(d.parent for d, i in zip(found, images) if i.base == "amplitude")
        metadata = {}
        for name in ("original_metadata", "metadata"):
            if isinstance(home.get(name), h5py.Group):
                metadata.update(_group_dict(home[name]))
        result = _scan(path, home, images, channels, metadata)
    return NsidImage(path=path, result=result, passes=passes, metadata=metadata)


def read_scan(path: str | PathLike) -> ScanResult:
    """Read an NSID file as one scan (see :func:`read_image`, which also returns the metadata)."""
    return read_image(path).result


def read_scans(path_or_folder: str | PathLike) -> list[tuple[Path, ScanResult]]:
    """Read one NSID file, or every ``*.h5`` file of a folder in name order.

    Raises:
        NsidError: no such file or folder, a folder without ``*.h5`` files, or an unreadable
            file (the error names it).
    """
    path = Path(path_or_folder)
    if path.is_dir():
        files = sorted(path.glob("*.h5"))
        if not files:
            raise NsidError(f"folder {str(path)!r} holds no *.h5 file; pass a folder of NSID files or one file")
    else:
        files = [path]
    return [(file, read_scan(file)) for file in files]
