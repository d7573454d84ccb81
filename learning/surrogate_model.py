"""The surrogate's model and its file: a small MLP of how a domain wall answers one tip pulse.

:class:`SurrogateModel` predicts the change of the wall near a pulse from the wall around it
(relative to the wall at the pulse, on ``points`` evenly spaced y over +-``span``), the pulse's x
offset from the wall, its signed voltage and log10 of its width (:func:`features`). The network
only sees positive pulses: a negative one is mirrored in x (with the domains swapped) into
:func:`canonical_frame`, and its predicted change mirrored back out.

A model file is plain data and tensors (:mod:`learning.files`): the weights, the input scaling,
the local grid, the film (field, profile y, initial and back wall, the domains' phases and
amplitudes), the source's hardware spec, limits and identity, and the provenance.
:func:`load_model` checks every entry the backend reads. :mod:`learning.surrogate_fit` writes
the files; :mod:`learning.surrogate_backend` serves them. This module needs neither Gymnasium
nor the environment. See docs/decisions/0005-surrogate.md.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from control.errors import PfmTwinError
from control.hardware import HardwareSpec
from control.limits import SafetyLimits
from learning.files import load_file

__all__ = [
    "ENTRIES",
    "FILE_FORMAT",
    "SCALE",
    "SurrogateFileError",
    "SurrogateModel",
    "canonical_frame",
    "features",
    "load_model",
    "wall_at",
]

#: ``format`` and ``version`` entries of a model file.
FILE_FORMAT = ("pfmtwin.surrogate", 1)
#: Length scale of the model's positional features and outputs, m.
SCALE = 50e-9


class SurrogateFileError(PfmTwinError, OSError):
    """A surrogate model file cannot be written or read, or it is not a pfmtwin surrogate model."""


def _offsets(span: float, points: int) -> np.ndarray:
    """y offsets from the pulse where the model reads and predicts the wall, m."""
    return np.linspace(-span, span, points)


def wall_at(y_query: np.ndarray, y: np.ndarray, x: np.ndarray, period: float | None) -> np.ndarray:
    """Wall x at ``y_query``: periodic over the film height when ``period`` is known, else held at the ends."""
    if period is None:
        return np.interp(y_query, y, x)
    return np.interp(y_query, y, x, period=period)


def features(y: np.ndarray, profiles: np.ndarray, pulse: np.ndarray, span: float, points: int,
             period: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Raw model inputs for pulses on walls, and where they are read.

    Args:
        y: y of the profile points, m, (lines,).
        profiles: wall x before each pulse, m, (n, lines).
        pulse: x, y, amplitude, width of each pulse, (n, 4).
        span, points: the model's local grid (+-span, m, in ``points`` points).
        period: film height, m (None: not periodic).

    Returns:
        (inputs (n, points + 3): local wall relative to the wall at the pulse / SCALE, pulse
        offset from the wall / SCALE, amplitude (V), log10 width; ys (n, points): the local
        grid's y, m).
    """
    s = _offsets(span, points)
    ys = pulse[:, 1:2] + s[None, :]
    local = np.stack([wall_at(row_y, y, row_x, period) for row_y, row_x in zip(ys, profiles)])
    at = np.array([wall_at(np.array([py]), y, row_x, period)[0] for py, row_x in zip(pulse[:, 1], profiles)])
    rel = (local - at[:, None]) / SCALE
    offset = (pulse[:, 0] - at) / SCALE
    return np.column_stack([rel, offset, pulse[:, 2], np.log10(pulse[:, 3])]), ys


def canonical_frame(inputs: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs in the frame of a positive pulse, and the sign that maps a change back.

    Mirroring the film in x and swapping its domains maps a pulse of -V onto one of +V with the
    wall positions and the offset negated, and negates the change it makes. So the network only
    learns positive pulses; a negative one is mirrored in, and its predicted change out.
    """
    sign = np.where(inputs[:, points + 1] < 0, -1.0, 1.0)
    out = inputs.copy()
    out[:, : points + 2] *= sign[:, None]  # wall, offset and voltage
    return out, sign


@dataclass(frozen=True)
class SurrogateModel:
    """A loaded model file: the network (as numpy arrays) and what the backend needs.

    Attributes:
        weights: (W, b) per layer, float64, W of shape (out, in); tanh between layers.
        in_mean, in_std: input standardization, (points + 3,).
        span, points: the local grid: +-span m in ``points`` points.
        film: field (m or None), y (m), initial wall x (m), back wall x (m or None), the two
            domains' phases (deg) and amplitudes (m).
        instrument: hardware and limits dicts, identity of the source.
        provenance: source URL, transitions, seed, training settings, held-out errors.
    """

    weights: tuple[tuple[np.ndarray, np.ndarray], ...]
    in_mean: np.ndarray
    in_std: np.ndarray
    span: float
    points: int
    film: dict[str, Any]
    instrument: dict[str, Any]
    provenance: dict[str, Any]

    @property
    def period(self) -> float | None:
        """Film height, m, over which the wall is periodic (None: not periodic)."""
        return self.film["field"]

    def predict(self, y: np.ndarray, profiles: np.ndarray, pulse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted change of the wall for each pulse, m, on its local grid.

        Args:
            y, profiles, pulse: as for :func:`features`.

        Returns:
            (change (n, points), m; ys (n, points), the grid's y, m).
        """
        raw, ys = features(y, profiles, pulse, self.span, self.points, self.period)
        canonical, sign = canonical_frame(raw, self.points)
        h = (canonical - self.in_mean) / self.in_std
        for k, (w, b) in enumerate(self.weights):
            h = h @ w.T + b
            if k < len(self.weights) - 1:
                h = np.tanh(h)
        return h * (SCALE * sign[:, None]), ys


#: Entries of a model file and their types (checked on loading, before anything reads them).
ENTRIES: dict[str, type | tuple[type, ...]] = {
    "arch": dict, "net": dict, "in_mean": torch.Tensor, "in_std": torch.Tensor, "film": dict, "instrument": dict,
    "provenance": dict,
}


def _vector(value: Any, n: int, what: str) -> np.ndarray:
    """``value`` as float64 of shape ``(n,)``, finite, or ``ValueError`` naming ``what``."""
    v = np.asarray(value.detach().double().numpy() if isinstance(value, torch.Tensor) else value, dtype=np.float64)
    if v.shape != (n,) or not np.isfinite(v).all():
        raise ValueError(f"{what} has shape {v.shape!r}, expected ({n},) finite values")
    return v


def _model(data: dict[str, Any], garbled: Callable[[str, str], SurrogateFileError]) -> SurrogateModel:
    """The :class:`SurrogateModel` of a model file's content, every entry checked.

    Raises:
        SurrogateFileError: from ``garbled(entry, why)`` for the first entry that does not fit.
    """
    where = "arch"
    try:
        span, points = float(data["arch"]["span"]), int(data["arch"]["points"])
        if not (span > 0 and math.isfinite(span)) or points < 3:
            raise ValueError(f"span {span!r} m and points {points!r} must be > 0 and >= 3")
        where = "net"
        net = data["net"]
        weights = []
        width = points + 3
        for k in range(max(1, len(net) // 2)):
            w, b = net[f"{k}.weight"], net[f"{k}.bias"]
            if not (isinstance(w, torch.Tensor) and isinstance(b, torch.Tensor)):
                raise TypeError(f"layer {k} holds a {type(w).__name__} and a {type(b).__name__}, not tensors")
            w, b = w.detach().double().numpy(), b.detach().double().numpy()
            if w.ndim != 2 or w.shape[1] != width or b.shape != (w.shape[0],):
                source = f"arch points {points} + 3" if k == 0 else f"layer {k - 1}'s output"
                raise ValueError(f"layer {k} has weight {w.shape!r} and bias {b.shape!r}; its input, {source}, is "
                                 f"{width} wide")
            weights.append((w, b))
            width = w.shape[0]
        if len(net) != 2 * len(weights) or width != points:
            raise ValueError(f"{len(net)} tensors in {len(weights)} layers end {width} wide; arch points is {points}")
        where = "in_mean"
        in_mean = _vector(data["in_mean"], points + 3, f"in_mean (arch points {points} + 3)")
        where = "in_std"
        in_std = _vector(data["in_std"], points + 3, f"in_std (arch points {points} + 3)")
        if not (in_std > 0).all():
            raise ValueError(f"in_std holds {int((in_std <= 0).sum())} values <= 0; it divides the inputs")
        where = "film"
        film = dict(data["film"])
        for key in ("y", "initial"):
            film[key] = np.asarray(film[key], dtype=np.float64)
        if film["y"].ndim != 1 or film["y"].shape != film["initial"].shape or len(film["y"]) < 2:
            raise ValueError(f"y {film['y'].shape!r} and initial {film['initial'].shape!r} must be equal, >= 2 points")
        field_size, back = film["field"], film.get("back")
        for name, value in (("field", field_size), ("back", back)):
            if value is not None and not isinstance(value, (int, float)):
                raise TypeError(f"{name} is a {type(value).__name__}, expected a number or None")
        for key in ("phase", "amplitude"):
            _vector(film[key], 2, key)
        where = "instrument"
        instrument = dict(data["instrument"])
        HardwareSpec.from_dict(instrument["hardware"])
        SafetyLimits.from_dict(instrument["limits"])
        where = "provenance"
        provenance = dict(data["provenance"])
        for key in ("source", "transitions", "seed"):  # read by info()
            if key not in provenance:
                raise KeyError(key)
    except KeyError as e:
        raise garbled(where, f"no key {e.args[0]!r}") from e
    except (TypeError, AttributeError, ValueError, IndexError) as e:
        raise garbled(where, " ".join(str(e).split())) from e
    return SurrogateModel(weights=tuple(weights), in_mean=in_mean, in_std=in_std, span=span, points=points,
                          film=film, instrument=instrument, provenance=provenance)


def load_model(path: str | os.PathLike[str]) -> SurrogateModel:
    """Read a model file with ``torch.load(weights_only=True)``.

    Every entry the backend reads is checked here (types, shapes, the hardware and limits), so
    a bad file fails when it is opened, with the file and the entry named.

    Raises:
        SurrogateFileError: missing, unreadable, not a PyTorch file, not a pfmtwin surrogate
            model of a known version, or an entry missing or garbled.
    """
    p = os.fspath(path)
    fix = "write one with 'pfmtwin agent surrogate fit TRANSITIONS.npz --out MODEL.pt'"
    data = load_file(p, FILE_FORMAT, "surrogate model file", SurrogateFileError, fix, ENTRIES)

    def garbled(entry: str, why: str) -> SurrogateFileError:
        return SurrogateFileError(f"surrogate model file {p!r} has a garbled entry {entry!r}: {why}; {fix}")

    return _model(data, garbled)
