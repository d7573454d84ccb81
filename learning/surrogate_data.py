"""Transitions for the surrogate: how the wall answers the pulses ``pfmtwin/DomainWall-v0`` sends.

:func:`collect_transitions` drives any backend URL through ``control.connect`` with the pulses
the environment would send for random actions (its window, pulse map and limits), and records
(wall profile before, pulse as emitted, wall profile after) as :class:`Transitions`. Profiles
come from :func:`control.analysis.trace_wall` on raster scans with the environment's pixel size and
line rate, taken over the whole film height (``info().options["field"]``) so that the wall is
known on both sides of every pulse; each profile averages ``scans`` scans. :class:`Transitions`
are saved as a compressed ``.npz``. See docs/decisions/0005-surrogate.md.
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import control
from control.analysis import Wall, trace_wall
from control.contract import ScanResult, ScanSpec, wrap_phase
from control.errors import PfmTwinError
from learning.env import DomainWallEnv
from learning.files import write_atomically

__all__ = ["TRANSITIONS_FORMAT", "Transitions", "TransitionsError", "collect_transitions"]

#: ``format`` entry of a transitions file (.npz).
TRANSITIONS_FORMAT = "pfmtwin.transitions"


class TransitionsError(PfmTwinError, ValueError):
    """A transitions set is unusable (unreadable file, wrong format, too few transitions or episodes)."""


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
    return float(wrap_phase(np.rad2deg(np.angle(z))))


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
