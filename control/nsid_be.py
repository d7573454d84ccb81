"""BEPS data in NSID files: read measured loops, write the twin's spectra and SHO fits.

Written in pycroscopy's NSID layout (readable by sidpy, pyNSID and SciFiReaders), with the
spectroscopic dimensions named as BGlib names them for band-excitation data: ``Frequency`` (Hz),
``DC_Offset`` (V) and ``Field`` (0: "on-field", DC applied; 1: "off-field", read after it).
A BEPS grid becomes (in group ``/beps``; each main dataset in a group of its own with its 1D
dimension scales beside it, as sidpy writes and SciFiReaders expects):

    response/response   (X, Y, DC_Offset, Field, Frequency) complex, m    data_type SPECTRAL_IMAGE
    sho/NAME/NAME       NAME = Amplitude, Frequency, Quality_Factor, Phase, R2_Criterion:
                        (X, Y, DC_Offset, Field), the SHO fit (control.sho); NAME_error: its error
    times               (X, Y, DC_Offset) s, when each step began
    attrs               kind="BEPSResult", spec (JSON), sho_convention

Points that are not a grid are written with one spatial dimension, ``Point``, and their
positions in ``positions`` (m). :func:`read_beps` reads such files and measured ones (e.g. the
PbTiO3 data set in tests/data: a 3D (X, Y, Voltage) dataset of loops).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import h5py
import numpy as np

from control.errors import InvalidArgumentError, RecordingError
from control.nsid import NSID_VERSION, NsidError, _check_metadata, _publish
from control.sho import SHOFit
from control.spectroscopy import BEPSResult

#: Root attribute ``format`` of a file written by :func:`write_beps`.
BEPS_FORMAT = "pfmtwin.beps"
FIELDS = ("on-field", "off-field")
SHO_NAMES = {"amplitude": ("Amplitude", "m"), "frequency": ("Frequency", "Hz"), "quality": ("Quality_Factor", ""),
             "phase": ("Phase", "rad"), "r2": ("R2_Criterion", "")}
#: Names measured files give the bias axis.
BIAS_NAMES = ("Voltage", "DC_Offset", "Bias", "dc", "voltage")


def _grid(points: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(xs, ys) if the points are a full raster, row by row (as BEPSSpec.grid makes them), else None."""
    xs, ys = np.unique(points[:, 0]), np.unique(points[:, 1])
    if len(xs) * len(ys) != len(points):
        return None
    want = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    return (xs, ys) if np.array_equal(want, points) else None


def _dataset(parent: h5py.Group, name: str, data: np.ndarray, dims: list[tuple], quantity: str, units: str,
             source: str) -> h5py.Dataset:
    """An NSID main dataset in a group of its own, its dimension scales beside it (as sidpy lays them out).

    ``dims``: (name, values, units, dimension_type, quantity) per axis.
    """
    group = parent.create_group(name)
    dset = group.create_dataset(name, data=data)
    dset.attrs.update(data_type="SPECTRAL_IMAGE", modality="BEPS", source=source, main_data_name=name, title=name,
                      quantity=quantity, units=units, nsid_version=NSID_VERSION, pyNSID_version=NSID_VERSION)
    for axis, (label, values, unit, kind, what) in enumerate(dims):
        scale = group.create_dataset(label, data=np.asarray(values))
        scale.attrs.update(name=label, quantity=what, units=unit, dimension_type=kind, nsid_version=NSID_VERSION)
        scale.make_scale(label)
        dset.dims[axis].label = label
        dset.dims[axis].attach_scale(scale)
    return dset


def write_beps(path: str | PathLike, result: BEPSResult, fit: SHOFit | None = None, *,
               metadata: Mapping | None = None, overwrite: bool = False) -> Path:
    """Write a BEPS measurement (and its SHO fit) as an NSID file; atomic, same input same bytes.

    Args:
        path: the file to create, ``.h5``.
        result: what :meth:`control.Guarded.beps` returned.
        fit: :func:`control.sho.fit_sho` of ``result.response`` (shape (points, steps, 2)), or None.
        metadata: extra attributes (str -> str or number).
        overwrite: replace an existing file.
    """
    if not isinstance(result, BEPSResult):
        raise InvalidArgumentError(f"result={result!r} is a {type(result).__name__}; pass a BEPSResult")
    points, steps = result.response.shape[:2]
    if fit is not None and np.shape(fit.frequency) != (points, steps, 2):
        raise InvalidArgumentError(f"fit has shape {np.shape(fit.frequency)}; fit_sho(result.frequencies, "
                                   f"result.response) has shape {(points, steps, 2)}")
    meta = _check_metadata(metadata)
    path = Path(path)
    if path.exists() and not overwrite:
        raise RecordingError(f"{str(path)!r} already exists; choose another path or pass overwrite=True")
    from control import __version__

    source = f"pfmtwin {__version__}"
    positions = result.positions
    grid = _grid(positions)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(tmp, "w") as file:
            file.attrs.update(format=BEPS_FORMAT, format_version=1)
            group = file.create_group("beps")
            group.attrs.update(kind="BEPSResult", spec=json.dumps(result.spec.to_dict()),
                               sho_convention="R(f) = A exp(i phi) f0^2 / (f^2 - i f f0 / Q - f0^2) (BGlib SHOfunc)")
            if grid is not None:
                xs, ys = grid
                spatial = [("X", xs, "m", "SPATIAL", "Position"), ("Y", ys, "m", "SPATIAL", "Position")]
                nx, ny = len(xs), len(ys)

                def arrange(a):  # (points, ...) row by row (y outer) -> (X, Y, ...)
                    return np.swapaxes(a.reshape(ny, nx, *a.shape[1:]), 0, 1)
            else:
                spatial = [("Point", np.arange(points), "a.u.", "SPATIAL", "Point")]
                group.create_dataset("positions", data=positions).attrs.update(quantity="Position", units="m")

                def arrange(a):
                    return a
            dc = ("DC_Offset", result.dc, "V", "SPECTRAL", "DC bias")
            field = ("Field", np.arange(2), "a.u.", "SPECTRAL", "Field: 0 on-field, 1 off-field")
            freq = ("Frequency", result.frequencies, "Hz", "SPECTRAL", "Frequency")
            _dataset(group, "response", arrange(result.response), [*spatial, dc, field, freq],
                     "cantilever response", "m", source)
            if fit is not None:
                sho = group.create_group("sho")
                for attr, (name, units) in SHO_NAMES.items():
                    _dataset(sho, name, arrange(np.asarray(getattr(fit, attr))), [*spatial, dc, field], name, units,
                             source)
                    if attr != "r2":
                        _dataset(sho, f"{name}_error", arrange(np.asarray(getattr(fit, f"{attr}_error"))),
                                 [*spatial, dc, field], f"{name} standard error", units, source)
            group.create_dataset("times", data=arrange(result.times)).attrs.update(quantity="time", units="s")
            if meta:
                group.create_group("metadata").attrs.update(meta)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise RecordingError(f"cannot write {str(path)!r}: {exc}; check that its directory exists and is writable") from exc
    _publish(tmp, path, overwrite)
    return path


@dataclass
class Loops:
    """Hysteresis loops read from a file.

    Attributes:
        dc: the DC bias of each step, V, shape (steps,).
        loops: the response per point and step, shape (points, steps), real.
        positions: (x, y) of each point, m, shape (points, 2).
        units: the response's unit as the file gives it.
        source: the file.
    """

    dc: np.ndarray
    loops: np.ndarray
    positions: np.ndarray
    units: str
    source: Path


def read_beps(path: str | PathLike) -> Loops:
    """Loops from an NSID file: a (X, Y, bias) dataset of real loops (a measured data set such as
    tests/data/pfm-beps/BEPS_PTO_50x50.h5), or the off-field SHO fit of a :func:`write_beps` file
    (projected on the phase axis, as :func:`control.sho.projected_loops` does).

    Raises:
        NsidError: no such dataset in the file.
    """
    path = Path(path)
    try:
        file = h5py.File(path, "r")
    except OSError as exc:
        raise NsidError(f"cannot read {str(path)!r}: {exc}") from None
    with file:
        if file.attrs.get("format") == BEPS_FORMAT:
            group = file["beps"]
            if "sho" not in group:
                raise NsidError(f"{str(path)!r} holds no SHO fit (write_beps(..., fit=...)); fit the response first")
            amp, phase = group["sho/Amplitude/Amplitude"][()][..., 1], group["sho/Phase/Phase"][()][..., 1]
            finite = phase[np.isfinite(phase)]
            axis = 0.5 * float(np.angle(np.mean(np.exp(2j * finite)))) if finite.size else 0.0
            loops = amp * np.cos(phase - axis)
            dc = group["response/DC_Offset"][()]
            if "X" in group["response"]:
                xs, ys = group["response/X"][()], group["response/Y"][()]
                loops = np.swapaxes(loops, 0, 1).reshape(-1, len(dc))
                positions = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
            else:
                positions = group["positions"][()]
            return Loops(dc=dc, loops=loops, positions=positions, units="m", source=path)
        found = []
        file.visititems(lambda name, obj: found.append(obj) if isinstance(obj, h5py.Dataset) and obj.ndim == 3 else None)
        for dset in found:
            labels = [str(x) for x in dset.attrs.get("DIMENSION_LABELS", [])]
            bias = [i for i, label in enumerate(labels) if label in BIAS_NAMES]
            if len(labels) != 3 or len(bias) != 1 or bias[0] != 2:
                continue
            dc = np.asarray(dset.dims[2][0][()], dtype=float)
            xs, ys = (np.asarray(dset.dims[i][0][()], dtype=float) for i in (0, 1))
            data = np.asarray(dset[()], dtype=float)  # (X, Y, steps)
            loops = np.swapaxes(data, 0, 1).reshape(-1, len(dc))
            positions = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
            units = dset.attrs.get("units", "a.u.")
            return Loops(dc=dc, loops=loops, positions=positions, units=str(units), source=path)
    raise NsidError(f"{str(path)!r} holds no BEPS loops: expected a 3D NSID dataset with DIMENSION_LABELS "
                    f"(X, Y, one of {BIAS_NAMES}) or a file of control.nsid_be.write_beps with an SHO fit")
