"""Stein variational policy gradient (Liu, Ramachandran, Liu and Peng, UAI 2017), in torch.

``n`` policy particles ``theta_1 .. theta_n`` (flat parameter vectors, shape ``(n, d)``) move
along the Stein variational gradient of ``KL(q || p)`` with the target ``p(theta) ~ exp(J(theta)
/ alpha)`` (flat prior), ``J`` the expected return and ``alpha`` the temperature. The
direction used here is **alpha times** Liu et al.'s::

    phi(theta_i) = 1/n sum_j [ k(theta_j, theta_i) grad J(theta_j)
                               + alpha grad_{theta_j} k(theta_j, theta_i) ]

with the RBF kernel ``k(a, b) = exp(-||a - b||^2 / h)``. Its gradient with respect to the
*first* argument is ``grad_{theta_j} k(theta_j, theta_i) = (2 / h) (theta_i - theta_j) k``: it
points from ``theta_j`` towards ``theta_i``, so adding it to ``theta_i`` moves ``theta_i`` *away*
from ``theta_j`` (repulsion). Getting this sign backwards turns the kernel term into an
attraction that collapses the particles (DESIGN.md: a public ORNL implementation did).

Bandwidth: the median heuristic ``h = med^2 / log(n + 1)``, ``med^2`` the median over the
``n (n - 1) / 2`` distinct pairs of the squared distances, so a pair at the median distance has
``k = 1 / (n + 1)``. (Liu and Wang's reference SVGD code takes the median over the full matrix,
zero diagonal included, which biases ``h`` low for few particles.) The bandwidth is held
constant while differentiating the kernel, as in SVGD.

Why alpha multiplies the repulsion instead of dividing the gradient (docs/decisions/0003):
both give the same direction for every particle, so with Adam (invariant to a constant rescale,
up to its ``eps``) they give the same steps for ``alpha > 0``; this form keeps ``phi`` finite as
``alpha -> 0``. The three properties, exactly as tested:

* ``n = 1``: ``k(theta, theta) = 1`` and its gradient is 0, so ``phi = grad J``: plain policy
  gradient, bit for bit (also through Adam).
* zero policy gradient: ``phi`` is pure repulsion; the particles' centroid stays put and the
  sum over pairs of squared distances grows, at the rate
  ``alpha (2 / h) sum_{i,j} k_ij ||theta_i - theta_j||^2 >= 0`` per unit step along ``phi``.
* ``alpha -> 0``: ``phi = D + alpha R`` exactly, so the repulsion ``R`` vanishes linearly and
  what remains is the kernel-smoothed gradient ``D_i = 1/n sum_j k_ij grad J(theta_j)``. That is
  ``n`` independent policy-gradient agents (each ``grad J(theta_i) / n``; Adam removes the
  ``1/n``) **only when the other particles are outside the kernel** (``k_ij -> 0`` for
  ``j != i``), Liu et al.'s "if the particles are initialized very differently". With the median
  heuristic that never happens: the bandwidth follows the spread, and at least half of the pairs
  have ``k >= 1 / (n + 1)``. So the independent baseline is its own coupling mode
  (``coupling="independent"``: ``phi_i = grad J(theta_i)``), not ``alpha = 0``.

Gradient *ascent* on ``J`` runs through one ``torch.optim.Adam`` per particle (particles move at
different times in the asynchronous trainer), with ``param.grad = -phi``. Pure torch/numpy: no
Gymnasium, no Dask, no global state.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from control.errors import PfmTwinError

__all__ = [
    "COUPLINGS",
    "LearningConfigError",
    "ParticleAdam",
    "SteinStep",
    "median_bandwidth",
    "one_torch_thread",
    "rbf_kernel",
    "stein_direction",
]

#: How particles are coupled: ``"svgd"`` (Stein variational gradient) or ``"independent"``.
COUPLINGS = ("svgd", "independent")


class LearningConfigError(PfmTwinError, ValueError):
    """A learning option (particles, algorithm, step size, space, budget) is unknown or out of range."""


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread inside the block, then restore the previous count.

    The learner's and the rollouts' tensors are small: on this shared 2-core machine torch's
    second OpenMP thread made an SVPG step of 8 x 4610 parameters 60 times slower (0.5 s
    instead of 8 ms), and a multi-threaded reduction may sum in another order, which would
    break bit-for-bit reproducibility between processes.
    """
    previous = torch.get_num_threads()
    if previous != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if previous != 1:
            torch.set_num_threads(previous)


def _as_matrix(thetas: torch.Tensor | np.ndarray, name: str, finite: bool = True) -> torch.Tensor:
    """``thetas`` as a float64 tensor of shape ``(n, d)``, or a :class:`LearningConfigError`.

    ``finite=False`` leaves the NaN/inf check to the caller (who checks what it computed instead).
    """
    t = torch.as_tensor(np.asarray(thetas) if not isinstance(thetas, torch.Tensor) else thetas,
                        dtype=torch.float64)
    if t.ndim != 2 or t.shape[0] < 1 or t.shape[1] < 1:
        raise LearningConfigError(
            f"{name} has shape {tuple(t.shape)!r}; expected (particles, parameters) with both >= 1")
    if finite and not bool(torch.isfinite(t).all()):
        raise LearningConfigError(f"{name} holds NaN or inf; every entry must be finite")
    return t


def _sq_distances(t: torch.Tensor, rows: Sequence[int] | None = None) -> torch.Tensor:
    """Squared distances ``||t_i - t_j||^2``, shape ``(n, n)`` (or ``(r, n)`` for ``rows``), from
    exact differences.

    ``cdist`` without the matrix-product shortcut (which loses precision for close particles),
    then squared: O(n^2 d) time, O(n^2) memory. Each pair is computed on its own, so a row
    computed alone equals that row of the whole matrix, bit for bit, and the matrix is symmetric.
    """
    left = t if rows is None else t[list(rows)]
    return torch.cdist(left, t, compute_mode="donot_use_mm_for_euclid_dist") ** 2


def _median_from(sq: torch.Tensor) -> float:
    n = sq.shape[0]
    if n < 2:
        return 1.0
    pairs = sq.numpy()[_upper(n)]
    # torch.quantile(pairs, 0.5) (linear interpolation: numpy's median), the same bits: the two
    # middle values by partition, then torch's lerp at weight 1/2, above - (above - below) * 0.5.
    # torch's sort and call overhead cost the asynchronous driver 0.15 ms a step at 32 particles.
    middle = (len(pairs) - 1) // 2
    if len(pairs) % 2:
        med = float(np.partition(pairs, middle)[middle])
    else:
        below, above = np.partition(pairs, [middle, middle + 1])[middle:middle + 2]
        med = float(above - (above - below) * 0.5)
    return med / math.log(n + 1) if med > 0 else 1.0


@functools.lru_cache(maxsize=8)
def _upper(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the pairs i < j of ``n`` particles."""
    return np.triu_indices(n, 1)


def median_bandwidth(thetas: torch.Tensor | np.ndarray) -> float:
    """Median-heuristic bandwidth ``h = median_{i<j} ||theta_i - theta_j||^2 / log(n + 1)``.

    Args:
        thetas: particle parameter vectors, shape ``(n, d)``.

    Returns:
        ``h`` in squared parameter units (the kernel is ``exp(-||a - b||^2 / h)``). With one
        particle, or when all particles coincide (median 0), returns 1.0: every kernel value
        is then 1 and every kernel gradient 0 whatever ``h`` is.
    """
    return _median_from(_sq_distances(_as_matrix(thetas, "thetas")))


def _check_bandwidth(bandwidth: float) -> float:
    if not (bandwidth > 0 and math.isfinite(bandwidth)):
        raise LearningConfigError(f"kernel bandwidth {bandwidth!r} must be finite and > 0")
    return float(bandwidth)


def _kernel_rows(t: torch.Tensor, sq: torch.Tensor, h: float, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    k = torch.exp(-sq[rows] / h)  # (r, n)
    # sum_j k_ij (theta_i - theta_j), written as theta_i sum_j k_ij - sum_j k_ij theta_j
    repulsion = (2.0 / h) * (k.sum(dim=1, keepdim=True) * t[rows] - k @ t)
    return k, repulsion


def rbf_kernel(thetas: torch.Tensor | np.ndarray, bandwidth: float,
               rows: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """RBF kernel matrix and the summed repulsion ``sum_j grad_{theta_j} k(theta_j, theta_i)``.

    Args:
        thetas: particles, shape ``(n, d)``.
        bandwidth: ``h > 0`` in squared parameter units.
        rows: the particles ``i`` wanted (default all ``n``).

    Returns:
        ``(K, R)``: ``K[i, j] = exp(-||theta_i - theta_j||^2 / h)``, shape ``(r, n)``, and
        ``R[i] = sum_j (2 / h) (theta_i - theta_j) K[i, j]``, shape ``(r, d)``, pointing away
        from the other particles.
    """
    t = _as_matrix(thetas, "thetas")
    chosen = list(range(t.shape[0])) if rows is None else [int(i) for i in rows]
    return _kernel_rows(t, _sq_distances(t), _check_bandwidth(bandwidth), chosen)


def stein_direction(thetas: torch.Tensor | np.ndarray, grads: torch.Tensor | np.ndarray, alpha: float,
                    bandwidth: float | None = None, rows: Sequence[int] | None = None) -> torch.Tensor:
    """The SVPG ascent direction ``phi`` (alpha-scaled form, see the module docstring).

    Args:
        thetas: particles, shape ``(n, d)``.
        grads: ``grad J`` estimate at each particle, shape ``(n, d)`` (ascent direction).
        alpha: temperature ``>= 0``; weight of the repulsion relative to the policy gradient, in
            the units of ``J`` (return).
        bandwidth: kernel ``h``; ``None`` for the median heuristic on ``thetas``.
        rows: the particles whose direction is wanted (default all).

    Returns:
        ``phi`` for ``rows``, float64, shape ``(r, d)``.
    """
    t = _as_matrix(thetas, "thetas")
    g = _as_matrix(grads, "grads")
    if g.shape != t.shape:
        raise LearningConfigError(f"grads have shape {tuple(g.shape)!r}, thetas {tuple(t.shape)!r}; they must match")
    if not (alpha >= 0 and math.isfinite(alpha)):
        raise LearningConfigError(f"temperature alpha={alpha!r} must be finite and >= 0")
    chosen = list(range(t.shape[0])) if rows is None else [int(i) for i in rows]
    return _stein(t, g, alpha, None if bandwidth is None else _check_bandwidth(bandwidth), chosen)[0]


def _stein(t: torch.Tensor, g: torch.Tensor, alpha: float, bandwidth: float | None,
           rows: list[int], sq: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """``(phi[rows], h)`` for validated inputs: the one place the direction is computed.

    ``sq``: the squared distances of ``t`` if already known (:class:`ParticleAdam` keeps them).
    """
    sq = _sq_distances(t) if sq is None else sq
    h = _median_from(sq) if bandwidth is None else bandwidth
    kernel, repulsion = _kernel_rows(t, sq, h, rows)
    return (kernel @ g + alpha * repulsion) / t.shape[0], h


@dataclass(frozen=True)
class SteinStep:
    """What one :meth:`ParticleAdam.step` did.

    Attributes:
        particles: indices of the particles that moved.
        bandwidth: kernel ``h`` used (squared parameter units); ``nan`` for independent coupling.
        direction_norm: ``||phi_i||`` of each moved particle, shape ``(len(particles),)``.
    """

    particles: tuple[int, ...]
    bandwidth: float
    direction_norm: np.ndarray


class ParticleAdam:
    """``n`` flat parameter vectors, each with its own Adam, moved by SVGD or independently.

    ``step(grads)`` ascends ``J``: it computes ``phi`` from the *current* parameters of all
    particles and the given gradients of all particles, then sets ``param.grad = -phi`` on the
    chosen particles and steps their Adams. The other particles do not move (the asynchronous
    trainer moves one particle per arriving rollout). Also used, with ``coupling="independent"``
    and negated gradients, for the per-particle critics.

    Args:
        thetas: initial parameters, shape ``(n, d)``; copied, kept in float64.
        coupling: ``"svgd"`` or ``"independent"`` (``phi_i = grads_i``).
        alpha: temperature for ``"svgd"`` (ignored for ``"independent"``), ``>= 0``.
        lr: Adam step size, parameter units per step, ``> 0``.
        bandwidth: fixed kernel ``h``, or ``None`` for the median heuristic at every step.
        betas: Adam's moment decay rates.
        eps: Adam's denominator guard.
    """

    def __init__(self, thetas: np.ndarray | torch.Tensor, *, coupling: str = "svgd", alpha: float = 1.0,
                 lr: float = 1e-3, bandwidth: float | None = None, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        t = _as_matrix(thetas, "thetas")
        if coupling not in COUPLINGS:
            raise LearningConfigError(f"unknown coupling {coupling!r}; expected one of {COUPLINGS}")
        if not (alpha >= 0 and math.isfinite(alpha)):
            raise LearningConfigError(f"temperature alpha={alpha!r} must be finite and >= 0")
        if not (lr > 0 and math.isfinite(lr)):
            raise LearningConfigError(f"learning rate {lr!r} must be finite and > 0")
        if bandwidth is not None and not (bandwidth > 0 and math.isfinite(bandwidth)):
            raise LearningConfigError(f"kernel bandwidth {bandwidth!r} must be finite and > 0, or None for the median heuristic")
        self.coupling = coupling
        self.alpha = float(alpha)
        self.bandwidth = bandwidth
        # One (n, d) tensor holds every particle; each particle's Parameter is a view of its row,
        # so the Adams move the rows in place and no step has to stack the particles again.
        self._t = t.clone()
        self._params = [torch.nn.Parameter(row) for row in self._t]
        self._optims = [torch.optim.Adam([p], lr=lr, betas=betas, eps=eps) for p in self._params]
        # Squared distances between the current particles, kept up to date row by row: a step of
        # one particle (the asynchronous trainer's) then costs O(n d), not O(n^2 d), and the
        # numbers are those of a full recomputation, bit for bit (_sq_distances).
        self._sq: torch.Tensor | None = None

    @property
    def n(self) -> int:
        """Number of particles."""
        return len(self._params)

    @property
    def dim(self) -> int:
        """Parameters per particle."""
        return self._params[0].numel()

    def theta(self, i: int) -> np.ndarray:
        """A copy of particle ``i``'s parameters, float64, shape ``(d,)``."""
        return self._t[i].numpy().copy()

    @property
    def thetas(self) -> np.ndarray:
        """A copy of the current parameters, float64, shape ``(n, d)``."""
        return self._t.numpy().copy()

    def direction(self, grads: np.ndarray | torch.Tensor,
                  particles: Sequence[int] | None = None) -> tuple[torch.Tensor, float]:
        """``(phi, h)`` at the current parameters for ``particles`` (default all), shape ``(r, d)``.

        ``h`` is nan for independent coupling.

        Raises:
            LearningConfigError: ``grads`` has the wrong shape, or NaN or inf where it is used (every
                entry with the kernel, the rows of ``particles`` without it).
        """
        g = _as_matrix(grads, "grads", finite=False)
        if g.shape != (self.n, self.dim):
            raise LearningConfigError(f"grads have shape {tuple(g.shape)!r}; expected ({self.n}, {self.dim})")
        chosen = list(range(self.n)) if particles is None else [int(i) for i in particles]
        if self.coupling == "independent":
            phi, h = g[chosen], math.nan
        else:
            if self._sq is None:
                self._sq = _sq_distances(self._t)
            phi, h = _stein(self._t, g, self.alpha, self.bandwidth, chosen, self._sq)
        # Every entry of grads multiplies a kernel value in phi (0 * NaN is NaN), so checking phi,
        # (r, d), finds what checking grads, (n, d), would: 0.5 ms of a one-particle step at 32.
        if not bool(torch.isfinite(phi).all()):
            raise LearningConfigError("grads holds NaN or inf; every entry must be finite")
        return phi, h

    def step(self, grads: np.ndarray | torch.Tensor, particles: Sequence[int] | None = None) -> SteinStep:
        """Move ``particles`` (default all) one Adam step along ``phi``.

        Args:
            grads: ``grad J`` estimate for every particle, shape ``(n, d)``; rows of particles
                without an estimate yet may be zeros.
            particles: indices to move; all of them are computed from the same pre-step state.

        Returns:
            A :class:`SteinStep`.
        """
        chosen = tuple(range(self.n)) if particles is None else tuple(int(i) for i in particles)
        for i in chosen:
            if not 0 <= i < self.n:
                raise LearningConfigError(f"particle index {i!r} outside 0..{self.n - 1}")
        phi, h = self.direction(grads, chosen)
        for row, i in enumerate(chosen):
            self._params[i].grad = -phi[row].clone()
            self._optims[i].step()
        if self._sq is not None:  # the moved particles' rows and columns
            moved = _sq_distances(self._t, chosen)
            self._sq[list(chosen), :] = moved
            self._sq[:, list(chosen)] = moved.T
        return SteinStep(chosen, h, phi.norm(dim=1).numpy())
