"""The piezo scanner: where the tip really is when the controller says (x, y).

The instrument reports commanded coordinates, as a real one does; this module says where the tip
actually is. Three non-idealities, each axis alike (the slow axis ramps too, so frames bow in y):

* **Hysteresis** (open loop, rate-independent): a Prandtl-Ishlinskii operator, a weighted sum of
  play (backlash) operators F_r with radii r (Krasnosel'skii & Pokrovskii 1989; Brokate &
  Sprekels 1996; for piezo actuators Janocha & Kuhnen 2000, Sens. Actuators A 79, 83; Gu, Zhu
  & Su 2014, IEEE Trans. Ind. Electron. 61, 1583):
      x_h = x0 + G (v - x0) + sum_i w_i (F_ri[v] - v),   F_r = clip(F_r, v - r, v + r).
  The radii are spread 4 per decade from 10 nm to 10 um with weights equal per decade (a 1/r
  density), so for any full symmetric ramp of length L between 100 nm and 20 um the trace and
  retrace branches are separated by ``hysteresis`` * L (within 7 %), most in the middle of
  the ramp and not at all at its turning points; a ramp on the trace lags (is short of) the
  command. For a Prandtl-Ishlinskii operator the mean gain over a loop grows by the loop's
  separation fraction per doubling of its length (Physik Instrumente, piezo tutorial:
  hysteresis 2 % small-signal to 10-15 % large-signal); G is set so that a 1 um loop spans exactly 1 um (the scanner is
  calibrated at 1 um), so at hysteresis 0.03 a 10 um image is about 10 % too large and a 100 nm
  image 10 % too small. Small moves after a reversal have the small-signal gain G - sum w.
* **Creep** (open loop): every step dv of the command at time t_k leaves the tip short by
  dv * (c(t - t_k) - c(0.1 s)), a linear superposition (Croft, Shed & Devasia 2001, J. Dyn. Syst. Meas.
  Control 123, 35: creep as a chain of spring-damper elements). Here c is a spectrum of
  relaxation times uniform in log time between ``creep_time`` and ``creep_horizon``,
      c(tau) = (gamma D / M) sum_m exp(-tau / theta_m),   D = log10(creep_horizon / creep_time),
  with M = ceil(1.5 D) times theta_m, which between the two times is the logarithmic law
  x(t) = x(0.1 s) (1 + gamma log10(t / 0.1 s)) of Physik Instrumente and Jung & Gweon 2000 (Rev.
  Sci. Instrum. 71, 1896): a move has its commanded length 0.1 s after it ends (the scanner is
  calibrated at imaging speeds), was gamma log10(0.1 s / creep_time) short of it before (about),
  and creeps on by gamma of it per decade, gamma * D in all, until ``creep_horizon``. Sampled paths
  are straight segments between samples, integrated exactly, so a raster's ramps, its flyback
  and its slow-axis steps all creep; the first pixels after a flyback are still creeping. Cost
  is O(M) per sample whatever the history.
* **Thermal drift** of the sample under the tip, steady at ``drift_speed`` (1-10 nm/min in
  ambient; Mokaberi & Requicha 2006, IEEE Trans. Autom. Sci. Eng. 3, 199), plus fault bursts.

``closed_loop=True`` models position sensors with feedback: no hysteresis and no creep, but the
loop follows the sensor noise (``sensor_noise`` m rms per sample, white, drawn from the scanner's
rng); drift of the sample relative to the sensor frame stays. Time is the simulation clock's;
nothing here reads the wall clock, and all randomness comes from the rng passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

#: Play-operator radii, m: 4 per decade from 10 nm to 10 um (loops of 100 nm-20 um are scale-free).
PLAY_RADII = 1e-8 * 10.0 ** (np.arange(13) / 4)
#: Loop length, m, whose mean gain is 1 (where the open-loop scanner is calibrated).
CALIBRATION_RAMP = 1e-6
#: Time after a move at which it has its calibrated length, s (Physik Instrumente's Delta L(t=0.1 s)).
CREEP_REFERENCE = 0.1
#: Creep relaxation times per decade between creep_time and creep_horizon (ripple < 0.1 % of gamma).
CREEP_MODES_PER_DECADE = 1.5


def _real(name: str, value, lo: float, hi: float, unit: str, fix: str) -> None:
    """Raise ValueError unless ``value`` is a real number in [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"ScannerParams.{name}={value!r} is not a number; {fix}")
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ValueError(f"ScannerParams.{name}={value!r} is outside [{lo!r}, {hi!r}]{unit}; {fix}")


@dataclass(frozen=True)
class ScannerParams:
    """Scanner non-idealities (module docstring for the model).

    Attributes:
        drift_speed: thermal drift speed, m/s (5 nm/min, ambient).
        drift_angle: drift direction, rad from +x; None: drawn from the scanner's rng.
        hysteresis: open-loop peak trace/retrace separation of a full symmetric ramp, as a
            fraction of the ramp length (0.03; Physik Instrumente quotes 2-15 %).
        creep: gamma, fraction of a move that creeps in per decade of time after it (0.02: the
            top of Physik Instrumente's 1-2 % for stacks; tube scanners creep more). With the default
            times a move is 2.5 % short when it ends, right 0.1 s later, 2 % long after 1 s and
            7.5 % long after 1000 s.
        creep_time: shortest creep relaxation time, s (settling of the move).
        creep_horizon: longest creep relaxation time, s (creep is over after a few of them).
        closed_loop: position sensors and feedback: no hysteresis, no creep, sensor noise.
        sensor_noise: closed-loop position noise, m rms per sample (imaging bandwidth).
    """

    drift_speed: float = 5e-9 / 60
    drift_angle: float | None = None
    hysteresis: float = 0.03
    creep: float = 0.02
    creep_time: float = 0.01
    creep_horizon: float = 1000.0
    closed_loop: bool = False
    sensor_noise: float = 0.3e-9

    def __post_init__(self) -> None:
        _real("drift_speed", self.drift_speed, 0.0, 1e-6, " m/s",
              "ambient thermal drift is 1-10 nm/min (1.7e-11-1.7e-10 m/s); 0 for none")
        if self.drift_angle is not None:
            _real("drift_angle", self.drift_angle, -1e3, 1e3, " rad",
                  "give a direction in rad (e.g. 0.5), or None to draw it from the rng")
        _real("hysteresis", self.hysteresis, 0.0, 0.15, " (fraction of the ramp)",
              "open-loop piezos show 0.02-0.15; use 0 or closed_loop=True for none")
        _real("creep", self.creep, 0.0, 0.1, " (fraction per decade of time)",
              "piezos creep 0.01-0.05 of a move per decade; 0 for none")
        _real("creep_time", self.creep_time, 1e-5, 10.0, " s", "piezo moves settle in 1-100 ms; try 0.01")
        _real("creep_horizon", self.creep_horizon, 10 * self.creep_time, 1e6, " s (at least 10 creep_time)",
              "creep lasts minutes to hours; try 1000")
        total = self.creep * math.log10(self.creep_horizon / self.creep_time)
        if total > 0.5:
            raise ValueError(f"ScannerParams: creep={self.creep!r} per decade from creep_time={self.creep_time!r} s "
                             f"to creep_horizon={self.creep_horizon!r} s creeps {total:.0%} of a move, above the "
                             "50% allowed; lower creep or shorten the span")
        if not isinstance(self.closed_loop, (bool, np.bool_)):
            raise ValueError(f"ScannerParams.closed_loop={self.closed_loop!r} is not a bool; pass True or False")
        _real("sensor_noise", self.sensor_noise, 0.0, 1e-8, " m rms",
              "closed-loop sensors give 0.1-0.5 nm rms at imaging bandwidth; try 3e-10")


def play_operators(hysteresis: float) -> tuple[np.ndarray, float]:
    """Weights of the play operators at ``PLAY_RADII`` and the gain G for a separation fraction.

    For a steady loop of length L the separation in the middle is Phi(L) - 2 Phi(L/2) with
    Phi(u) = sum_i w_i max(u - 2 r_i, 0); weights are scaled to make it ``hysteresis`` * L at
    ``CALIBRATION_RAMP``, and G so that that loop spans its own length.
    """
    r = PLAY_RADII
    shape = np.full(r.size, np.log(10.0) / 4)  # a 1/r density: equal weight per decade
    shape[0] += 1.0  # ... and the density below 10 nm lumped, so the separation stays ~ L down to 40 nm

    def separation(w: np.ndarray, ramp: float) -> float:
        phi = lambda u: float(np.sum(w * np.maximum(u - 2 * r, 0.0)))  # noqa: E731
        return phi(ramp) - 2 * phi(ramp / 2)

    w = shape * (hysteresis * CALIBRATION_RAMP / separation(shape, CALIBRATION_RAMP))
    stuck = 2 * r >= CALIBRATION_RAMP  # operators a loop this long never moves
    loss = w[stuck].sum() * CALIBRATION_RAMP + 2 * np.sum(w[~stuck] * r[~stuck])
    return w, 1.0 + float(loss) / CALIBRATION_RAMP


def creep_modes(params: ScannerParams) -> tuple[np.ndarray, np.ndarray]:
    """Relaxation times theta_m (s) and amplitudes a_m of the creep kernel c(tau) = sum a_m exp(-tau/theta_m)."""
    decades = math.log10(params.creep_horizon / params.creep_time)
    m = max(1, math.ceil(CREEP_MODES_PER_DECADE * decades))
    theta = params.creep_time * (params.creep_horizon / params.creep_time) ** ((np.arange(m) + 0.5) / m)
    return theta, np.full(m, params.creep * decades / m)


@numba.njit(cache=True, inline="always")
def _play_step(f, p, s, total, radii, weights, wsum, rsum, c, v):
    """Move play operators with outputs ``f`` from input c to v != c.

    Play outputs are 1-Lipschitz in r, so the operators the input drags along are always the p
    smallest: they sit at F_i = v - s r_i and are not stored while the branch lasts (s: its
    direction; total: sum_{i >= p} w_i F_i; wsum, rsum: cumulative sums of w_i and w_i r_i).
    O(1) per step amortized, O(n) per reversal. Returns the new (p, s, total) and
    sum_i w_i (F_i - v).
    """
    n = radii.size
    direction = 1.0 if v > c else -1.0
    if direction != s:  # a reversal at c: store the dragged operators, start a new branch
        for i in range(p):
            f[i] = c - s * radii[i]
        p, s, total = 0, direction, 0.0
        for i in range(n):
            total += weights[i] * f[i]
    while p < n and s * (v - f[p]) > radii[p]:
        total -= weights[p] * f[p]
        p += 1
    return p, s, total, -s * rsum[p] + total - v * (wsum[n] - wsum[p])


@numba.njit(cache=True)
def _follow(x, y, t, out_x, out_y, last, play, lag, radii, weights, gain, origin, theta, amp, velocity):
    """Open-loop positions along a sampled path; updates ``last`` (x, y, t), ``play`` and ``lag`` in place."""
    n_modes = theta.size
    decay = np.empty(n_modes)
    ramp = np.empty(n_modes)  # a_m times the mean of exp(-(t_j - s)/theta_m) over the segment
    wsum = np.zeros(radii.size + 1)
    rsum = np.zeros(radii.size + 1)
    for i in range(radii.size):
        wsum[i + 1] = wsum[i] + weights[i]
        rsum[i + 1] = rsum[i] + weights[i] * radii[i]
    fx, fy = play[0], play[1]
    drag_x, dir_x, rest_x = 0, 0.0, 0.0  # play branch state per axis (_play_step); dir 0: no branch yet
    drag_y, dir_y, rest_y = 0, 0.0, 0.0
    lx = lag[0].copy()
    ly = lag[1].copy()
    cx, cy, tp = last[0], last[1], last[2]
    ex = 0.0
    ey = 0.0
    for i in range(radii.size):
        ex += weights[i] * (fx[i] - cx)
        ey += weights[i] * (fy[i] - cy)
    cached = -1.0
    for j in range(x.size):
        dt = t[j] - tp
        dx = x[j] - cx
        dy = y[j] - cy
        if j == 0 or abs(dt - cached) > 1e-9 * dt:
            for m in range(n_modes):
                decay[m] = math.exp(-dt / theta[m])
                # The first sample is reached by a jump from the parked position (a step); later
                # ones by a straight segment from the previous sample.
                if j == 0 or dt <= 0.0:
                    ramp[m] = amp[m]
                else:
                    ramp[m] = -amp[m] * math.expm1(-dt / theta[m]) * theta[m] / dt
            cached = -1.0 if j == 0 else dt
        sx = 0.0
        sy = 0.0
        for m in range(n_modes):
            a = lx[m] * decay[m] + ramp[m] * dx
            b = ly[m] * decay[m] + ramp[m] * dy
            lx[m] = a
            ly[m] = b
            sx += a
            sy += b
        if dx != 0.0:
            drag_x, dir_x, rest_x, ex = _play_step(fx, drag_x, dir_x, rest_x, radii, weights, wsum, rsum,
                                                   cx, x[j])
        if dy != 0.0:
            drag_y, dir_y, rest_y, ey = _play_step(fy, drag_y, dir_y, rest_y, radii, weights, wsum, rsum,
                                                   cy, y[j])
        out_x[j] = origin[0] + gain * (x[j] - origin[0]) + ex - sx + velocity[0] * t[j]
        out_y[j] = origin[1] + gain * (y[j] - origin[1]) + ey - sy + velocity[1] * t[j]
        cx, cy, tp = x[j], y[j], t[j]
    for i in range(drag_x):  # store the operators the last branches drag along
        fx[i] = cx - dir_x * radii[i]
    for i in range(drag_y):
        fy[i] = cy - dir_y * radii[i]
    lag[0, :] = lx
    lag[1, :] = ly
    last[0], last[1], last[2] = cx, cy, tp


class Scanner:
    """Commanded and actual tip position as functions of instrument time.

    Args:
        params: the scanner's non-idealities.
        rng: the scanner's own random stream (drift direction, closed-loop sensor noise).
        start: commanded (x, y), m, at time 0; the piezo rests there, demagnetised, with no creep.
    """

    def __init__(self, params: ScannerParams, rng: np.random.Generator, start: tuple[float, float] = (0.0, 0.0)):
        self.params = params
        self.rng = rng
        angle = rng.uniform(0, 2 * np.pi) if params.drift_angle is None else params.drift_angle
        self.drift_velocity = params.drift_speed * np.array([np.cos(angle), np.sin(angle)])
        self.commanded = np.array(start, dtype=np.float64)
        self._origin = self.commanded.copy()
        self._time = 0.0  # time of the last state update, s
        self._weights, self._gain = play_operators(0.0 if params.closed_loop else params.hysteresis)
        self._radii = PLAY_RADII if self._weights.any() else PLAY_RADII[:0]
        self._play = np.repeat(self.commanded[:, None], self._radii.size, axis=1)  # (axis, operator)
        self._theta, self._amp = creep_modes(params)
        if params.closed_loop or params.creep == 0:
            self._theta, self._amp = self._theta[:0], self._amp[:0]
        # A move is calibrated CREEP_REFERENCE after it ends: the creep still to come then is gain.
        self._gain += float(np.sum(self._amp * np.exp(-CREEP_REFERENCE / self._theta)))
        self._lag = np.zeros((2, self._theta.size))  # creep still to come per mode at self._time, m
        self._bursts: list[tuple[float, float, np.ndarray]] = []  # (start, end, extra velocity)

    def drift_burst(self, start: float, duration: float, factor: float) -> None:
        """Thermal drift ``factor`` times faster from ``start`` for ``duration`` s (a fault)."""
        self._bursts.append((start, start + duration, (factor - 1.0) * self.drift_velocity))

    def move(self, target: tuple[float, float], time: float, duration: float = 0.0) -> None:
        """Record a straight move from ``commanded`` to ``target`` (m) that ended at ``time`` (s).

        ``duration``: how long the move took, s (0: a jump); its creep starts as it goes.
        """
        target = np.asarray(target, dtype=np.float64)
        self._check_time(time)
        step = target - self.commanded
        if self._theta.size:
            dt = time - self._time
            ramp = self._amp  # a jump; a move at constant speed: the kernel averaged over it
            if duration > 0:
                ramp = -self._amp * np.expm1(-duration / self._theta) * self._theta / duration
            self._lag = self._lag * np.exp(-dt / self._theta) + ramp * step[:, None]
        if self._radii.size:  # each axis moves monotonically: one clamp per operator is exact
            self._play = np.clip(self._play, target[:, None] - self._radii, target[:, None] + self._radii)
        self.commanded = target
        self._time = float(time)

    def follow(self, x, y, t) -> tuple[np.ndarray, np.ndarray]:
        """Actual positions (m) along a commanded path sampled in time order.

        ``x``, ``y`` (m) and ``t`` (s) are arrays of one shape, flattened in C order = time
        order. The first sample is reached from ``commanded`` by a jump (a move ending at its
        time); consecutive samples are joined by straight commanded segments, so a large jump
        between samples (a raster flyback) is a move. Hysteresis follows the reversal points of
        each axis, creep superposes the decays of every segment, and the scanner's state ends at
        the last sample. Returns arrays of the input shape.
        """
        x, y, t = (np.asarray(a, dtype=np.float64) for a in (x, y, t))
        if not x.shape == y.shape == t.shape:
            raise ValueError(f"follow needs x, y, t of one shape, got {x.shape}, {y.shape}, {t.shape}; "
                             "pass one sample time per position")
        shape = x.shape
        x, y, t = (np.ascontiguousarray(a).ravel() for a in (x, y, t))
        if t.size == 0:
            return x.reshape(shape), y.reshape(shape)
        self._check_time(t[0])
        back = np.flatnonzero(t[1:] < t[:-1])
        if back.size:
            k = int(back[0])
            raise ValueError(f"follow needs samples in time order; t[{k + 1}]={float(t[k + 1])!r} s comes "
                             f"before t[{k}]={float(t[k])!r} s; order the path by time (trace, then retrace, "
                             "line by line)")
        if self.params.closed_loop:
            noise = self.rng.standard_normal((2, t.size)) * self.params.sensor_noise
            ax = x + noise[0] + self.drift_velocity[0] * t
            ay = y + noise[1] + self.drift_velocity[1] * t
            self.commanded = np.array([x[-1], y[-1]])
            self._time = float(t[-1])
        else:
            ax, ay = np.empty_like(x), np.empty_like(y)
            last = np.array([self.commanded[0], self.commanded[1], self._time])
            _follow(x, y, t, ax, ay, last, self._play, self._lag, self._radii, self._weights[: self._radii.size],
                    self._gain, self._origin, self._theta, self._amp, self.drift_velocity)
            self.commanded = last[:2].copy()
            self._time = float(last[2])
        for begin, end, velocity in self._bursts:
            inside = np.clip(t, begin, end) - begin
            ax += inside * velocity[0]
            ay += inside * velocity[1]
        return ax.reshape(shape), ay.reshape(shape)

    def position(self, t: float) -> tuple[float, float]:
        """Actual (x, y), m, at time ``t`` (s) while parked at ``commanded`` since the last move or path.

        No sensor noise is drawn (closed loop): a pulse lands at the mean position.
        """
        dx, dy = self.offset(np.array([t], dtype=np.float64))
        return float(self.commanded[0] + dx[0]), float(self.commanded[1] + dy[0])

    def offset(self, times) -> tuple[np.ndarray, np.ndarray]:
        """Actual minus commanded position (m) while parked, at ``times`` (s): hysteresis, creep, drift.

        Arrays of the shape of ``times``; :meth:`position` uses it for pulses (scans go through
        :meth:`follow`).
        """
        t = np.asarray(times, dtype=np.float64)
        c, o = self.commanded, self._origin
        w = self._weights[: self._radii.size]
        hyst = (self._gain - 1.0) * (c - o) + (self._play - c[:, None]) @ w  # incl. creep calibration
        decay = np.exp(-np.maximum(t - self._time, 0.0)[..., None] / self._theta)  # (..., mode)
        dx = hyst[0] - decay @ self._lag[0] + t * self.drift_velocity[0]
        dy = hyst[1] - decay @ self._lag[1] + t * self.drift_velocity[1]
        for begin, end, velocity in self._bursts:
            inside = np.clip(t, begin, end) - begin
            dx = dx + inside * velocity[0]
            dy = dy + inside * velocity[1]
        return dx, dy

    def _check_time(self, time: float) -> None:
        if not time >= self._time:
            raise ValueError(f"scanner time runs forward: t={float(time)!r} s is before the last update at "
                             f"{self._time!r} s; pass instrument times in order")
