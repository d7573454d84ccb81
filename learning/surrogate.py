"""``surrogate://PATH``: a learned model of how a domain wall answers a tip pulse, served as a backend.

Three steps, each a function that returns plain data (and a ``python -m learning.surrogate``
sub-command):

1. :func:`collect_transitions` drives any backend URL through ``control.connect`` with the
   pulses ``pfmtwin/DomainWall-v0`` would send for random actions (its window, pulse map and
   limits), and records (wall profile before, pulse as emitted, wall profile after). Profiles
   come from :func:`learning.wall.trace_wall` on raster scans with the environment's pixel size
   and line rate, taken over the whole film height (``info().options["field"]``) so that the
   wall is known on both sides of every pulse; each profile averages ``scans`` scans.
2. :func:`fit_surrogate` trains a small torch MLP (seeded, one thread, same data and seed ->
   the same bytes of the model file). Input: the wall around the pulse, relative to the wall
   at the pulse, on ``points`` evenly spaced y over +-``span``; the pulse's x offset from the
   wall; its signed voltage; log10 of its width. Output: the change of the wall on those
   points. Two mirror symmetries of the physics are built in: x -> -x with the domains swapped
   maps a negative pulse onto a positive one (the network only sees positive pulses, in that
   canonical frame), and y -> -y doubles the training set.
3. :func:`open_surrogate` (registered as the ``surrogate`` scheme under ``pfmtwin.backends``)
   serves a model file as a ``control.Backend``: its state is the wall x(y) on a fine grid over
   the film height; ``apply_pulse`` adds the model's predicted change; ``scan`` renders phase
   (the two domains' phases from the source, with sub-pixel area fractions at the wall, so
   ``trace_wall`` reads back the profile it holds), amplitude (a dip at the wall) and a flat
   height. Time is simulated: moves at the tip speed, scan lines at the quantized line period,
   pulses after the trigger latency for their quantized width. No wall clock, no global RNG:
   phase noise (``?noise=`` deg) comes from ``?seed=``.

:func:`evaluate_surrogate` gives the RMS error of the predicted wall change against held-out
transitions of the source next to the no-change baseline, and the speed-up of the environment
on ``surrogate://`` over the source. See docs/decisions/0005-surrogate.md.

The surrogate implements the verbs the environment uses (``info``, ``scan``, ``apply_pulse``,
``now``, ``close``) and ``move_tip``; it knows nothing of waveforms, drift, the tip's wear or
domains away from the one wall.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import gymnasium
import numpy as np
import torch

import control
import learning
from control.contract import InstrumentInfo, LineCallback, PulseRecord, ScanResult, ScanSpec
from control.errors import InstrumentError, PfmTwinError, UrlError
from control.fpga import FpgaTiming
from control.hardware import HardwareSpec
from control.limits import SafetyLimits
from control.urls import Option, options, split
from learning.files import load, plain, save, write_atomically
from learning.env import DomainWallEnv
from learning.svpg import one_torch_thread
from learning.wall import Wall, trace_wall

__all__ = [
    "ENTRIES",
    "FILE_FORMAT",
    "Surrogate",
    "SurrogateFileError",
    "SurrogateModel",
    "TransitionsError",
    "Transitions",
    "collect_transitions",
    "env_speed",
    "evaluate_surrogate",
    "features",
    "fit_surrogate",
    "load_model",
    "main",
    "open_surrogate",
]

#: ``format`` and ``version`` entries of a model file.
FILE_FORMAT = ("pfmtwin.surrogate", 1)
#: ``format`` entry of a transitions file (.npz).
TRANSITIONS_FORMAT = "pfmtwin.transitions"
#: Length scale of the model's positional features and outputs, m.
SCALE = 50e-9
#: Points of the backend's wall profile per film height (fine beside the model's 10 nm points).
FINE = 512
#: Width of the amplitude dip at the wall (Gaussian sigma), m: about the twin's default tip footprint.
DIP_WIDTH = 10e-9


class SurrogateFileError(PfmTwinError, OSError):
    """A surrogate model file cannot be written or read, or it is not a pfmtwin surrogate model."""


class TransitionsError(PfmTwinError, ValueError):
    """A transitions set is unusable (unreadable file, wrong format, too few transitions or episodes)."""


# ----------------------------------------------------------------------------------------------
# Transitions


@dataclass
class Transitions:
    """Wall responses to pulses, as recorded from a backend.

    Attributes:
        y: y of the profile's scan lines, m, shape (lines,), increasing.
        before: wall x on each line before each pulse, m, shape (n, lines).
        after: wall x on each line after the pulse (and the backend's relaxation), m, (n, lines).
        pulse: the pulses as emitted: x (m), y (m), amplitude (V), width (s), shape (n, 4).
        episode: index of the (re)opened sample each transition was recorded on, shape (n,).
        meta: plain data: source URL, environment keyword arguments, window, film field,
            domain phases and amplitudes, initial profile, limits, hardware, noise floor, seed.
    """

    y: np.ndarray
    before: np.ndarray
    after: np.ndarray
    pulse: np.ndarray
    episode: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.pulse)

    def subset(self, mask: np.ndarray) -> Transitions:
        """The transitions where ``mask`` (bool, shape (n,)) is true; same ``y`` and ``meta``."""
        return Transitions(self.y, self.before[mask], self.after[mask], self.pulse[mask], self.episode[mask],
                           dict(self.meta))

    def split(self, holdout: float) -> tuple[Transitions, Transitions]:
        """(training, held-out): the last ``holdout`` fraction of the episodes is held out.

        Whole episodes are held out, so no held-out pulse acts on a wall the training set saw.

        Raises:
            TransitionsError: fewer than two episodes, or ``holdout`` outside (0, 1).
        """
        if not 0.0 < holdout < 1.0:
            raise TransitionsError(f"holdout={holdout!r} must be a fraction in (0, 1), e.g. 0.2")
        episodes = np.unique(self.episode)
        if len(episodes) < 2:
            raise TransitionsError(
                f"{len(self)} transitions come from {len(episodes)} episode(s); holding some out needs at least "
                "2: collect more transitions or lower episode_steps"
            )
        held = episodes[len(episodes) - max(1, int(round(holdout * len(episodes)))):]
        mask = np.isin(self.episode, held)
        return self.subset(~mask), self.subset(mask)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a compressed ``.npz`` (arrays plus the metadata as JSON), atomically.

        Raises:
            TransitionsError: the file cannot be written.
        """
        p = os.fspath(path)
        if not p.endswith(".npz"):
            p += ".npz"  # as numpy names it

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez_compressed(
                    f, y=self.y, before=self.before, after=self.after, pulse=self.pulse, episode=self.episode,
                    meta=np.array(json.dumps({"format": TRANSITIONS_FORMAT, **self.meta})),
                )

        write_atomically(p, write, TransitionsError)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Transitions:
        """Read a file written by :meth:`save`.

        Raises:
            TransitionsError: missing, unreadable or not a pfmtwin transitions file.
        """
        p = os.fspath(path)
        try:
            with np.load(p, allow_pickle=False) as data:
                arrays = {k: data[k] for k in ("y", "before", "after", "pulse", "episode", "meta")}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            raise TransitionsError(
                f"cannot read transitions file {p!r} ({e}); write one with "
                "'python -m learning.surrogate collect --url URL --out FILE.npz'"
            ) from e
        meta = json.loads(str(arrays.pop("meta")))
        if meta.pop("format", None) != TRANSITIONS_FORMAT:
            raise TransitionsError(f"{p!r} is not a pfmtwin transitions file (no format {TRANSITIONS_FORMAT!r})")
        return cls(**arrays, meta=meta)


def _profile_spec(window: Any, field_size: float | None) -> ScanSpec:
    """The scan the profiles are read from: the window's x extent and pixel size, the whole film height."""
    if field_size is None:
        return window.spec()
    pixel = window.size / window.points
    lines = max(window.points, int(round(field_size / pixel)))
    return ScanSpec(center=(window.center[0], field_size / 2), size=(window.size, field_size),
                    pixels=(window.points, lines), line_rate=window.line_rate)


def _mean_wall(scope: control.Microscope, spec: ScanSpec, scans: int) -> tuple[Wall, np.ndarray, ScanResult]:
    """The wall of the first of ``scans`` scans, the mean wall x over all of them, and the first scan."""
    first = scope.scan(spec)
    wall = trace_wall(first)
    xs = [wall.x]
    for _ in range(scans - 1):
        other = trace_wall(scope.scan(spec))
        if not other.crossing or other.lost:
            return other, other.x, first
        xs.append(other.x)
    return wall, np.mean(xs, axis=0), first


def _circular_mean(phase: np.ndarray) -> float:
    """Mean of angles (deg), in [-90, 270) like the twin's phase channel."""
    z = np.exp(1j * np.deg2rad(phase)).mean()
    return float((np.rad2deg(np.angle(z)) + 90.0) % 360.0 - 90.0)


def _domains(result: ScanResult, wall: Wall) -> dict[str, list[float]]:
    """Phase (deg) and median amplitude (m) of the left and the right domain of a scan."""
    left, right = wall.state > 0.5, wall.state < -0.5
    return {
        "phase": [_circular_mean(result.phase[left]), _circular_mean(result.phase[right])],
        "amplitude": [float(np.median(result.amplitude[left])), float(np.median(result.amplitude[right]))],
    }


def _back_wall(scope: control.Microscope, field_size: float, pixel: float, y: np.ndarray, x: np.ndarray,
               phases: Sequence[float]) -> float:
    """x of the film's periodic second wall (where the left domain begins), m, from a full-field scan."""
    n = max(8, int(round(field_size / pixel)))
    result = scope.scan(ScanSpec(center=(field_size / 2, field_size / 2), size=(field_size, field_size),
                                 pixels=(n, n), line_rate=scope.info().limits.line_rate_range[1]))
    ph = np.deg2rad(result.phase)
    right = np.cos(ph - np.deg2rad(phases[1])) > np.cos(ph - np.deg2rad(phases[0]))
    wall = np.interp(result.y[:, 0], y, x, period=field_size)
    behind = right & (result.x < wall[:, None])  # right-domain pixels left of the wall: beyond the back wall
    return float(np.mean(behind.sum(axis=1)) * field_size / n)


def collect_transitions(
    url: str,
    n: int,
    *,
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | None = None,
    episode_steps: int = 40,
    scans: int = 2,
    out: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> Transitions:
    """Record ``n`` wall responses to the pulses ``pfmtwin/DomainWall-v0`` sends for random actions.

    The environment is built on ``url`` with ``env_kwargs`` only to resolve its window, pulse
    map and limits (nothing is reset or stepped); the microscope it opened through
    ``control.connect`` is then driven directly. Each episode starts on a freshly opened sample
    (a simulated one comes back new) and ends after ``episode_steps`` pulses or when the wall
    leaves the profile scan. Actions are uniform in [-1, 1]^4 from ``numpy.random.default_rng(seed)``.

    Args:
        url: backend URL, e.g. ``"twin://?seed=1&grid=64&field=5e-7"``.
        n: number of transitions, >= 1.
        seed: seed of the random actions.
        env_kwargs: keyword arguments of the environment (window, voltage, width, offset ...).
        episode_steps: pulses per opened sample.
        scans: scans averaged per wall profile (the measured change's noise falls as 1/sqrt).
        out: also save the transitions there (``.npz``).
        progress: print one line per episode to stderr.

    Returns:
        The transitions; ``meta["noise_rms"]`` is the RMS change (m) between two profiles with
        no pulse in between, the floor of any prediction error.

    Raises:
        TransitionsError: ``n``, ``episode_steps`` or ``scans`` below 1, or the backend shows no
            wall across the profile scan on a fresh sample.
        UrlError, LimitError, EnvConfigError: from the URL and the environment's arguments.
    """
    for name, value in (("n", n), ("episode_steps", episode_steps), ("scans", scans)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TransitionsError(f"{name}={value!r} must be a whole number >= 1")
    kwargs = dict(env_kwargs or {})
    env = DomainWallEnv(url, **kwargs)
    rng = np.random.default_rng(seed)
    try:
        info = env.microscope.info()
        raw = info.options.get("field") if isinstance(info.options, dict) else None
        field_size = float(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) and raw > 0 else None
        window, limits = env.window, env.limits
        spec = _profile_spec(window, field_size)
        limits.check_scan(spec)
        y = np.asarray(spec.positions()[1][:, 0], dtype=np.float64)
        rows: dict[str, list] = {"before": [], "after": [], "pulse": [], "episode": []}
        meta: dict[str, Any] = {}
        noise: list[float] = []
        episode = 0
        while len(rows["pulse"]) < n:
            if episode > 0:
                env.close()  # the next env.microscope reopens: a fresh sample
            scope = env.microscope
            wall_a, xa, first = _mean_wall(scope, spec, scans)
            wall, x, _ = _mean_wall(scope, spec, scans)
            if not (wall_a.crossing and wall.crossing) or wall_a.lost or wall.lost:
                raise TransitionsError(
                    f"no wall crosses the profile scan {spec.to_dict()!r} on a fresh sample of {url!r}; choose "
                    "env_kwargs (center, size) whose window a wall crosses from its first line to its last"
                )
            noise.append(float(np.sqrt(np.mean((x - xa) ** 2))))
            if episode == 0:
                meta = {"initial": ((xa + x) / 2).tolist(), **_domains(first, wall_a)}
                meta["back"] = (_back_wall(scope, field_size, window.size / window.points, y, meta["initial"],
                                           meta["phase"]) if field_size is not None else None)
            for _ in range(episode_steps):
                if len(rows["pulse"]) >= n:
                    break
                at = Wall(y=y, x=x, state=wall.state, left=wall.left, width=wall.width)
                pulse = env.pulse_map(rng.uniform(-1.0, 1.0, 4), window, at, limits)
                record = scope.apply_pulse(*pulse)
                new, x_new, _ = _mean_wall(scope, spec, scans)
                if not new.crossing or new.lost:
                    break  # the wall left the scan: its profile means nothing; next sample
                rows["before"].append(x)
                rows["after"].append(x_new)
                rows["pulse"].append([record.x, record.y, record.amplitude, record.width])
                rows["episode"].append(episode)
                x, wall = x_new, new
            if progress:
                print(f"episode {episode}: {len(rows['pulse'])}/{n} transitions", file=sys.stderr)
            episode += 1
            if episode > 10 * n:
                raise TransitionsError(
                    f"{episode} samples of {url!r} gave {len(rows['pulse'])} of {n} transitions: the wall leaves the "
                    "profile scan at almost every pulse; narrow the pulse ranges (env_kwargs voltage, width, offset)"
                )
    finally:
        env.close()
    meta.update(
        source=url,
        env_kwargs=kwargs,
        seed=int(seed),
        scans=int(scans),
        episode_steps=int(episode_steps),
        field=field_size,
        window=[window.center[0], window.center[1], window.size, window.points, window.line_rate],
        profile_scan=spec.to_dict(),
        noise_rms=float(np.mean(noise)),
        limits=info.limits.to_dict(),
        hardware=info.hardware.to_dict(),
        identity=info.identity,
    )
    result = Transitions(
        y=y,
        before=np.asarray(rows["before"], dtype=np.float64),
        after=np.asarray(rows["after"], dtype=np.float64),
        pulse=np.asarray(rows["pulse"], dtype=np.float64),
        episode=np.asarray(rows["episode"], dtype=np.int64),
        meta=meta,
    )
    if out is not None:
        result.save(out)
    return result


# ----------------------------------------------------------------------------------------------
# Features and the model


def _offsets(span: float, points: int) -> np.ndarray:
    """y offsets from the pulse where the model reads and predicts the wall, m."""
    return np.linspace(-span, span, points)


def _interp(y_query: np.ndarray, y: np.ndarray, x: np.ndarray, period: float | None) -> np.ndarray:
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
    local = np.stack([_interp(row_y, y, row_x, period) for row_y, row_x in zip(ys, profiles)])
    at = np.array([_interp(np.array([py]), y, row_x, period)[0] for py, row_x in zip(pulse[:, 1], profiles)])
    rel = (local - at[:, None]) / SCALE
    offset = (pulse[:, 0] - at) / SCALE
    return np.column_stack([rel, offset, pulse[:, 2], np.log10(pulse[:, 3])]), ys


def _targets(y: np.ndarray, before: np.ndarray, after: np.ndarray, ys: np.ndarray,
             period: float | None) -> np.ndarray:
    """Measured change of the wall on the local grids ``ys``, / SCALE."""
    return np.stack([_interp(row_y, y, a - b, period) for row_y, a, b in zip(ys, after, before)]) / SCALE


def _canonical(inputs: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs in the frame of a positive pulse, and the sign that maps a change back.

    Mirroring the film in x and swapping its domains maps a pulse of -V onto one of +V with the
    wall positions and the offset negated, and negates the change it makes. So the network only
    learns positive pulses; a negative one is mirrored in, and its predicted change out.
    """
    sign = np.where(inputs[:, points + 1] < 0, -1.0, 1.0)
    out = inputs.copy()
    out[:, : points + 2] *= sign[:, None]  # wall, offset and voltage
    return out, sign


def _mirrored(inputs: np.ndarray, targets: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray]:
    """The data and its mirror image in y (the local grid reversed): 2 x the rows."""
    flip = np.concatenate([inputs[:, :points][:, ::-1], inputs[:, points:]], axis=1)
    return np.concatenate([inputs, flip]), np.concatenate([targets, targets[:, ::-1]])


def _mlp(sizes: Sequence[int]) -> torch.nn.Sequential:
    layers: list[torch.nn.Module] = []
    for k in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[k], sizes[k + 1]))
        if k < len(sizes) - 2:
            layers.append(torch.nn.Tanh())
    return torch.nn.Sequential(*layers)


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
        canonical, sign = _canonical(raw, self.points)
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
    data = load(p, FILE_FORMAT, "surrogate model file", SurrogateFileError, fix, ENTRIES)

    def garbled(entry: str, why: str) -> SurrogateFileError:
        return SurrogateFileError(f"surrogate model file {p!r} has a garbled entry {entry!r}: {why}; {fix}")

    return _model(data, garbled)


def _errors(model: SurrogateModel, data: Transitions) -> dict[str, float]:
    """RMS error (m) of the predicted wall against ``data``, and of predicting no change.

    "local": on the measured scan lines within +-span of each pulse (where the model acts);
    "profile": on all lines of the profile (elsewhere the model predicts no change).
    """
    change, ys = model.predict(data.y, data.before, data.pulse)
    measured = data.after - data.before
    predicted = np.zeros_like(measured)
    near = np.zeros(measured.shape, dtype=bool)
    for i in range(len(data)):
        d = data.y - data.pulse[i, 1]
        if model.period is not None:
            d = (d + model.period / 2) % model.period - model.period / 2
        near[i] = np.abs(d) <= model.span
        predicted[i, near[i]] = np.interp(d[near[i]], ys[i] - data.pulse[i, 1], change[i])
    err = predicted - measured

    def rms(values: np.ndarray) -> float:
        return float(np.sqrt(np.mean(values**2)))

    return {
        "local_rms": rms(err[near]),
        "local_baseline_rms": rms(measured[near]),
        "profile_rms": rms(err),
        "profile_baseline_rms": rms(measured),
    }


def fit_surrogate(
    transitions: Transitions | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    seed: int = 0,
    epochs: int = 300,
    hidden: Sequence[int] = (64, 64),
    span: float = 150e-9,
    points: int = 31,
    holdout: float = 0.2,
    lr: float = 2e-3,
    batch: int = 256,
    weight_decay: float = 1e-4,
    augment: bool = True,
) -> dict[str, Any]:
    """Train the MLP on the transitions (all but the held-out episodes) and write the model file.

    Deterministic: the same transitions, arguments and seed give the same bytes of the file
    (one torch thread, a seeded ``torch.Generator`` for the initial weights and the batches).

    Args:
        transitions: a :class:`Transitions` or the path of its ``.npz``.
        out: the model file to write.
        seed: seed of the initial weights and the batch order.
        epochs: passes over the (augmented) training set.
        hidden: hidden layer widths (tanh).
        span: half-length of the local grid along the wall, m: longer than a pulse's reach.
        points: points of the local grid.
        holdout: fraction of the episodes held out for the reported error.
        lr, batch, weight_decay: Adam step size, minibatch size, L2 weight decay.
        augment: add the mirror images of the data in y (2 x the rows).

    Returns:
        The model file's provenance: source, counts, seed, settings, and the held-out errors
        in nm ("local_rms" and its "local_baseline_rms", "profile_rms", "profile_baseline_rms").

    Raises:
        TransitionsError: too few transitions or episodes; SurrogateFileError: ``out`` cannot be written.
    """
    data = transitions if isinstance(transitions, Transitions) else Transitions.load(transitions)
    if not (span > 0 and math.isfinite(span)) or isinstance(points, bool) or not isinstance(points, int) or points < 3:
        raise TransitionsError(f"span={span!r} m must be positive and points={points!r} a whole number >= 3")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise TransitionsError(f"epochs={epochs!r} must be a whole number >= 1")
    train, test = data.split(holdout)
    period = data.meta.get("field")
    raw, ys = features(train.y, train.before, train.pulse, span, points, period)
    raw, sign = _canonical(raw, points)
    target = _targets(train.y, train.before, train.after, ys, period) * sign[:, None]
    if augment:
        raw, target = _mirrored(raw, target, points)
    mean, std = raw.mean(axis=0), raw.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    x = torch.from_numpy(((raw - mean) / std).astype(np.float32))
    t = torch.from_numpy(target.astype(np.float32))
    sizes = [points + 3, *(int(h) for h in hidden), points]
    with one_torch_thread():
        gen = torch.Generator().manual_seed(int(seed))
        net = _mlp(sizes)
        with torch.no_grad():
            for layer in net:
                if isinstance(layer, torch.nn.Linear):
                    torch.nn.init.xavier_uniform_(layer.weight, generator=gen)
                    layer.bias.zero_()
        optimizer = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=gen)
            for start in range(0, len(x), batch):
                idx = order[start:start + batch]
                loss = torch.mean((net(x[idx]) - t[idx]) ** 2)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    state = {}
    for k, layer in enumerate(linears):
        state[f"{k}.weight"] = layer.weight.detach().clone()
        state[f"{k}.bias"] = layer.bias.detach().clone()
    meta = data.meta
    film = {
        "field": period,
        "y": data.y.tolist(),
        "initial": list(meta["initial"]),
        "back": meta.get("back"),
        "phase": list(meta["phase"]),
        "amplitude": list(meta["amplitude"]),
    }
    instrument = {"hardware": meta["hardware"], "limits": meta["limits"], "identity": meta["identity"]}
    provenance: dict[str, Any] = {
        "source": meta["source"],
        "env_kwargs": meta.get("env_kwargs", {}),
        "transitions": len(data),
        "train": len(train),
        "held_out": len(test),
        "collection_seed": meta.get("seed"),
        "seed": int(seed),
        "epochs": int(epochs),
        "hidden": [int(h) for h in hidden],
        "augment": bool(augment),
        "noise_rms_nm": meta.get("noise_rms", math.nan) * 1e9,
        "software_version": control.__version__,
    }
    content = {
        "format": FILE_FORMAT[0],
        "version": FILE_FORMAT[1],
        "arch": {"span": float(span), "points": int(points), "sizes": sizes, "activation": "tanh", "scale": SCALE},
        "net": state,
        "in_mean": torch.from_numpy(mean.astype(np.float32)),
        "in_std": torch.from_numpy(std.astype(np.float32)),
        "film": plain(film, "film", SurrogateFileError),
        "instrument": plain(instrument, "instrument", SurrogateFileError),
    }
    model = SurrogateModel(
        weights=tuple((state[f"{k}.weight"].double().numpy(), state[f"{k}.bias"].double().numpy())
                      for k in range(len(linears))),
        in_mean=content["in_mean"].double().numpy(), in_std=content["in_std"].double().numpy(),
        span=float(span), points=int(points),
        film={**film, "y": data.y, "initial": np.asarray(film["initial"])}, instrument=instrument,
        provenance=provenance,
    )
    provenance["held_out_nm"] = {k: v * 1e9 for k, v in _errors(model, test).items()}
    content["provenance"] = plain(provenance, "provenance", SurrogateFileError)
    save(out, content, SurrogateFileError)
    return provenance


# ----------------------------------------------------------------------------------------------
# The backend


def _nonnegative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"{value!r} is negative")
    return value


def _noise(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 90.0:
        raise ValueError(f"{value!r} is outside [0, 90] deg")
    return value


ACCEPTED = {
    "seed": Option(_nonnegative_int, 0, "int >= 0, seed of the scan noise"),
    "noise": Option(_noise, 0.0, "phase noise rms in deg, 0-90"),
}


class Surrogate:
    """A wall that moves as a trained model says, behind the ``control.Backend`` verbs.

    Reach it through ``control.connect("surrogate:///path/model.pt")``. State: the wall x on
    :data:`FINE` points over the film height (or over the source's profile scan when the film
    is not periodic), the tip position and the simulated time.

    Args:
        model: the loaded model file.
        url: the URL it was opened with.
        path: the model file.
        seed: seed of the scan noise.
        noise: phase noise rms, deg (0: noise-free scans).
    """

    def __init__(self, model: SurrogateModel, *, url: str, path: str, seed: int = 0, noise: float = 0.0) -> None:
        self.model = model
        self.url = url
        self.path = path
        self.seed = seed
        self.noise = noise
        film = model.film
        self.hardware = HardwareSpec.from_dict(model.instrument["hardware"])
        self.limits = SafetyLimits.from_dict(model.instrument["limits"])
        period = model.period
        if period is not None:
            self.y = (np.arange(FINE) + 0.5) * (period / FINE)
        else:
            self.y = np.linspace(film["y"][0], film["y"][-1], FINE)
        self.x = _interp(self.y, film["y"], film["initial"], period)
        self.rng = np.random.default_rng(seed)
        self.tip = (0.0, 0.0)
        self.time = 0.0

    # -- the Backend verbs ------------------------------------------------------------------

    def info(self) -> InstrumentInfo:
        """Identity, the source's hardware spec and limits, and the options (``field``: film side, m)."""
        p = self.model.provenance
        opts: dict[str, Any] = {"model": self.path, "seed": self.seed, "noise": self.noise, "source": p["source"]}
        if self.model.period is not None:
            opts["field"] = self.model.period
        return InstrumentInfo(
            backend="surrogate",
            url=self.url,
            identity=f"pfmtwin surrogate of {p['source']} ({p['transitions']} transitions, seed {p['seed']})",
            protocol_version=control.PROTOCOL_VERSION,
            software_version=control.__version__,
            hardware=self.hardware,
            limits=self.limits,
            options=opts,
        )

    def now(self) -> float:
        """Simulated instrument time, s."""
        return self.time

    def move_tip(self, x: float, y: float, speed: float) -> None:
        """Move the tip to (x, y) m at ``speed`` m/s (advances the time only)."""
        distance = math.hypot(x - self.tip[0], y - self.tip[1])
        self.time += distance / speed
        self.tip = (x, y)

    def wall(self, y: np.ndarray | float) -> np.ndarray:
        """The wall x (m) the surrogate holds at ``y`` (m)."""
        return _interp(np.asarray(y, dtype=np.float64), self.y, self.x, self.model.period)

    def _left_fraction(self, x: np.ndarray, y: np.ndarray, pixel: float) -> np.ndarray:
        """Fraction of each pixel (centre x, y; width ``pixel``, m) in the left domain."""
        wall = self.wall(y)
        period, back = self.model.period, self.model.film.get("back")
        if period is None or back is None:
            return np.clip((wall - (x - pixel / 2)) / pixel, 0.0, 1.0)
        # The film is periodic: the left domain is [back, wall) + k * period.
        xc = np.mod(x, period)
        lo, hi = xc - pixel / 2, xc + pixel / 2
        overlap = np.zeros_like(xc)
        for k in (-1.0, 0.0, 1.0):
            overlap += np.clip(np.minimum(hi, wall + k * period) - np.maximum(lo, back + k * period), 0.0, None)
        return np.clip(overlap / pixel, 0.0, 1.0)

    def _render(self, spec: ScanSpec) -> dict[str, np.ndarray]:
        xs, ys = spec.positions()
        f = self._left_fraction(xs, ys, spec.size[0] / spec.pixels[0])
        (phi_l, phi_r), (amp_l, amp_r) = self.model.film["phase"], self.model.film["amplitude"]
        # The domains are drawn 180 deg apart about the bisector of the source's two phases (the
        # twin's background puts them ~165 deg apart), and a wall pixel at the angle whose
        # cos(phase - axis) is 2 f - 1: trace_wall's area measure then reads the held wall back.
        left = phi_l + ((phi_r - phi_l + 180.0) % 360.0 - 180.0) / 2.0 - 90.0
        phase = left + np.rad2deg(np.arccos(np.clip(2.0 * f - 1.0, -1.0, 1.0)))
        distance = np.abs(xs - self.wall(ys))
        if self.model.period is not None:
            distance = np.minimum(distance % self.model.period, self.model.period - distance % self.model.period)
        amplitude = (f * amp_l + (1.0 - f) * amp_r) * (1.0 - np.exp(-0.5 * (distance / DIP_WIDTH) ** 2))
        if self.noise > 0:
            phase = phase + self.noise * self.rng.standard_normal(phase.shape)
        return {
            "height": np.zeros(spec.shape),
            "amplitude": amplitude,
            "phase": (phase + 90.0) % 360.0 - 90.0,
        }

    def scan(self, spec: ScanSpec, on_line: LineCallback | None = None) -> ScanResult:
        """Render an image of the wall the surrogate holds (channels as the twin's, plus retrace)."""
        xs, ys = spec.positions()
        self.move_tip(float(xs[0, 0]), float(ys[0, 0]), self.limits.tip_speed_max)
        ny, nx = spec.shape
        period = FpgaTiming(self.hardware).line_period(spec.line_rate, nx)  # whole pixel cycles
        per_line = period * (2 if spec.retrace else 1)
        line_times = self.time + np.arange(ny) * per_line
        channels = self._render(spec)
        if spec.retrace:
            channels.update({f"{k}_retrace": v for k, v in self._render(spec).items()})
        if on_line is not None:
            for i in range(ny):
                on_line(i, float(line_times[i]), {k: v[i] for k, v in channels.items()})
        self.time += ny * per_line
        self.tip = (float(xs[-1, -1]), float(ys[-1, -1]))
        return ScanResult(spec=spec, channels=channels, x=xs, y=ys, line_times=line_times)

    def apply_pulse(self, x: float, y: float, amplitude: float, width: float) -> PulseRecord:
        """Move to (x, y), emit the quantized pulse, and move the wall as the model predicts."""
        hw = self.hardware
        fpga = FpgaTiming(hw)
        cycles = fpga.pulse_cycles(width)  # refused as the controller refuses it
        code = fpga.bias_code(amplitude)
        emitted, emitted_width = fpga.bias(code), cycles / hw.clock
        self.move_tip(x, y, self.limits.tip_speed_max)
        self.time += fpga.pulse_latency
        start = self.time
        if code != 0:
            pulse = np.array([[x, y, emitted, emitted_width]])
            change, ys = self.model.predict(self.y, self.x[None, :], pulse)
            d = self.y - y
            if self.model.period is not None:
                d = (d + self.model.period / 2) % self.model.period - self.model.period / 2
            near = np.abs(d) <= self.model.span
            self.x = self.x.copy()
            self.x[near] += np.interp(d[near], ys[0] - y, change[0])
        self.time += emitted_width
        return PulseRecord(x=x, y=y, amplitude=emitted, width=emitted_width, start=start, cycles=cycles,
                           requested_amplitude=amplitude, requested_width=width)

    def apply_waveform(self, *args: Any, **kwargs: Any) -> None:
        """Not modelled: the surrogate learned pulses only."""
        raise InstrumentError(
            "the surrogate backend does not model waveforms (only apply_pulse); run waveforms on the twin "
            f"it was trained from ({self.model.provenance['source']!r})"
        )

    def close(self) -> None:
        """Nothing to release (later calls are refused by ``control.Guarded``)."""


def open_surrogate(url: str) -> Surrogate:
    """Open ``surrogate://PATH[?seed=N&noise=DEG]`` (the ``surrogate`` entry of ``pfmtwin.backends``).

    ``surrogate:///abs/path/model.pt`` for an absolute path, ``surrogate://model.pt`` relative
    to the working directory.

    Raises:
        UrlError: another scheme, no path, or an unknown option or bad value.
        SurrogateFileError: the model file is missing, unreadable or not a surrogate model.
    """
    scheme, address, raw = split(url)
    if scheme != "surrogate":
        raise UrlError(f"{url!r} is not a surrogate:// URL")
    path = unquote(address)
    if path in ("", "/"):
        raise UrlError(
            f"{url!r} names no model file; write surrogate:///abs/path/model.pt (or surrogate://model.pt, "
            "relative to the working directory)"
        )
    opts = options(url, raw, ACCEPTED)
    return Surrogate(load_model(path), url=url, path=path, seed=int(opts["seed"]), noise=float(opts["noise"]))


# ----------------------------------------------------------------------------------------------
# Evaluation


def env_speed(url: str, steps: int, *, env_kwargs: Mapping[str, Any] | None = None, seed: int = 0) -> dict[str, float]:
    """Steps per second of ``pfmtwin/DomainWall-v0`` on ``url`` under seeded random actions (wall clock).

    Construction and the first reset are not timed; later resets (after an episode ends) are.
    """
    env = gymnasium.make(learning.ENV_ID, microscope=url, **dict(env_kwargs or {}))
    try:
        env.action_space.seed(seed)
        env.reset(seed=seed)
        start = time.perf_counter()
        for _ in range(steps):
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()
        elapsed = time.perf_counter() - start
    finally:
        env.close()
    return {"steps": steps, "seconds": elapsed, "steps_per_s": steps / elapsed if elapsed > 0 else math.inf}


def evaluate_surrogate(
    model_path: str | os.PathLike[str],
    transitions: Transitions | str | os.PathLike[str],
    *,
    steps: int = 50,
    twin_url: str | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Error of the model on transitions it was not trained on, and the speed-up of the environment.

    Args:
        model_path: the model file.
        transitions: held-out transitions (e.g. collected with another seed), or their ``.npz``.
        steps: environment steps timed on each backend (0: skip the speed measurement).
        twin_url: the backend to compare speeds with; default: the model's source URL.
        env_kwargs: environment keyword arguments; default: those the transitions were collected with.
        seed: seed of the timed episodes' actions.

    Returns:
        "transitions", errors in nm ("local_rms", "local_baseline_rms": on the lines within
        +-span of the pulse; "profile_rms", "profile_baseline_rms": on all lines), "noise_rms_nm"
        (the measurement floor of the source), and with ``steps`` the environment's steps/s on
        the surrogate and on the source and their ratio "speedup".
    """
    path = os.path.abspath(os.fspath(model_path))
    model = load_model(path)
    data = transitions if isinstance(transitions, Transitions) else Transitions.load(transitions)
    result: dict[str, Any] = {"model": path, "transitions": len(data), "source": model.provenance["source"]}
    result.update({f"{k}_nm": v * 1e9 for k, v in _errors(model, data).items()})
    result["noise_rms_nm"] = float(data.meta.get("noise_rms", math.nan)) * 1e9
    if steps > 0:
        kwargs = dict(env_kwargs if env_kwargs is not None else model.provenance.get("env_kwargs", {}))
        source = twin_url or model.provenance["source"]
        fast = env_speed(f"surrogate://{path}", steps, env_kwargs=kwargs, seed=seed)
        slow = env_speed(source, steps, env_kwargs=kwargs, seed=seed)
        result.update(
            env_kwargs=kwargs, steps=steps, surrogate_steps_per_s=fast["steps_per_s"],
            source_steps_per_s=slow["steps_per_s"], speedup=fast["steps_per_s"] / slow["steps_per_s"],
        )
    return result


# ----------------------------------------------------------------------------------------------
# Command line


def main(argv: Sequence[str] | None = None, prog: str = "python -m learning.surrogate") -> int:
    """``python -m learning.surrogate collect|fit|evaluate ...`` (or ``pfmtwin agent surrogate``); prints one JSON object."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="record wall responses to random environment pulses")
    c.add_argument("--url", required=True, help="backend URL, e.g. 'twin://?seed=1&grid=64&field=5e-7'")
    c.add_argument("-n", type=int, default=500, help="transitions")
    c.add_argument("--seed", type=int, default=0, help="seed of the random actions")
    c.add_argument("--env-kwargs", type=json.loads, default={}, help="environment keyword arguments as JSON")
    c.add_argument("--episode-steps", type=int, default=40, help="pulses per opened sample")
    c.add_argument("--scans", type=int, default=2, help="scans averaged per wall profile")
    c.add_argument("--out", required=True, help="transitions file to write (.npz)")
    f = sub.add_parser("fit", help="train the model and write the model file")
    f.add_argument("transitions", help="transitions file (.npz)")
    f.add_argument("--out", required=True, help="model file to write (.pt)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--epochs", type=int, default=300)
    f.add_argument("--holdout", type=float, default=0.2, help="fraction of episodes held out")
    f.add_argument("--no-augment", action="store_true", help="do not add the mirror images of the data in y")
    e = sub.add_parser("evaluate", help="held-out error and speed-up")
    e.add_argument("model", help="model file (.pt)")
    e.add_argument("transitions", help="held-out transitions file (.npz)")
    e.add_argument("--steps", type=int, default=50, help="environment steps timed per backend (0: none)")
    e.add_argument("--twin-url", default=None, help="backend to compare speed with (default: the model's source)")
    args = parser.parse_args(argv)
    try:
        if args.command == "collect":
            data = collect_transitions(args.url, args.n, seed=args.seed, env_kwargs=args.env_kwargs,
                                       episode_steps=args.episode_steps, scans=args.scans, out=args.out, progress=True)
            out: dict[str, Any] = {"out": args.out, "transitions": len(data),
                                   "episodes": int(len(np.unique(data.episode))),
                                   "noise_rms_nm": data.meta["noise_rms"] * 1e9}
        elif args.command == "fit":
            out = fit_surrogate(args.transitions, args.out, seed=args.seed, epochs=args.epochs, holdout=args.holdout,
                                augment=not args.no_augment)
        else:
            out = evaluate_surrogate(args.model, args.transitions, steps=args.steps, twin_url=args.twin_url)
    except PfmTwinError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
