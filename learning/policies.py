"""Small MLP policies as flat parameter vectors, and the policy file.

A policy is described by a :class:`PolicySpec` (plain data: spaces and architecture) and lives
as flat vectors: the *actor* (what SVPG's kernel sees) and, for A2C, a separate *critic*. The
vector layout is ``torch.nn.utils.parameters_to_vector`` of :meth:`Policy.actor_parameters`:
for each linear layer its weight ``(out, in)`` then bias ``(out,)``, then (Box actions) the
state-independent ``log_std``.

* Observation: a ``Box`` of any shape, flattened.
* ``Discrete(n)`` actions: categorical over ``n`` logits.
* ``Box`` actions: diagonal Gaussian in normalized units ``u``; a bounded dimension maps
  ``clip(u, -1, 1)`` affinely onto ``[low, high]``, an unbounded one passes ``u`` through. The
  log-probability is that of the unclipped ``u`` (the clipping is part of the environment).

:class:`NumpyActor` runs the same actor in numpy for acting inside rollouts: a torch call per
environment step costs about 140 us here, the numpy forward about 19 us (CartPole's step is
13 us). The gradient pass is torch (:class:`Policy`); a test checks the two agree.

A policy file (:func:`save_policy`, :func:`load_policy`) is a ``torch.save`` of plain data
and tensors only, so ``torch.load(weights_only=True)`` reads it without unpickling classes;
written atomically, and the same policy gives the same bytes (:mod:`learning.files`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium
import numpy as np
import torch
from torch import nn

from control.errors import PfmTwinError
from learning.files import load_file, plain_data, save_file
from learning.svpg import LearningConfigError

__all__ = [
    "ENTRIES",
    "FILE_FORMAT",
    "NumpyActor",
    "Policy",
    "PolicyFile",
    "PolicyFileError",
    "PolicySpec",
    "init_particle",
    "load_policy",
    "save_policy",
]

#: ``format`` entry of a policy file, and its version.
FILE_FORMAT = ("pfmtwin.policy", 1)


class PolicyFileError(PfmTwinError, OSError):
    """A policy file cannot be written or read, or its content is not a pfmtwin policy."""


@dataclass(frozen=True)
class PolicySpec:
    """Spaces and architecture of a policy: everything needed to rebuild it from its vectors.

    Attributes:
        obs_shape: observation shape (the network sees it flattened).
        action_kind: ``"discrete"`` or ``"box"``.
        action_shape: ``()`` for discrete, the Box shape otherwise.
        n_actions: number of discrete actions (0 for Box).
        low: Box lower bounds, flattened (``-inf`` allowed); empty for discrete.
        high: Box upper bounds, flattened; empty for discrete.
        hidden: hidden layer widths (tanh), e.g. ``(64, 64)``.
        critic: whether the policy carries a value network (A2C).
        log_std_init: initial ``log(std)`` of Box actions, in normalized action units.
    """

    obs_shape: tuple[int, ...]
    action_kind: str
    action_shape: tuple[int, ...] = ()
    n_actions: int = 0
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()
    hidden: tuple[int, ...] = (64, 64)
    critic: bool = False
    log_std_init: float = 0.0

    def __post_init__(self) -> None:
        if self.action_kind not in ("discrete", "box"):
            raise LearningConfigError(f"action kind {self.action_kind!r}; expected 'discrete' or 'box'")
        if any(int(w) < 1 for w in self.hidden):
            raise LearningConfigError(f"hidden widths {self.hidden!r} must all be >= 1")
        if self.obs_dim < 1:
            raise LearningConfigError(f"observation shape {self.obs_shape!r} holds no values")
        if self.action_kind == "discrete" and self.n_actions < 1:
            raise LearningConfigError(f"Discrete action space with n={self.n_actions!r}; need n >= 1")
        if self.action_kind == "box" and not (len(self.low) == len(self.high) == self.action_dim >= 1):
            raise LearningConfigError(
                f"Box action shape {self.action_shape!r} with {len(self.low)} lows and {len(self.high)} highs")

    @classmethod
    def from_spaces(cls, observation_space: gymnasium.Space, action_space: gymnasium.Space, *,
                    hidden: Sequence[int] = (64, 64), critic: bool = False, log_std_init: float = 0.0) -> PolicySpec:
        """Spec for an environment's spaces.

        Raises:
            LearningConfigError: the observation space is not a ``Box`` (wrap the environment
                in ``gymnasium.wrappers.FlattenObservation``), or the action space is neither
                ``Discrete`` nor ``Box``.
        """
        if not isinstance(observation_space, gymnasium.spaces.Box):
            raise LearningConfigError(
                f"observation space {observation_space!r} is not a Box; wrap the environment in "
                "gymnasium.wrappers.FlattenObservation")
        common = dict(obs_shape=tuple(int(s) for s in observation_space.shape), hidden=tuple(int(w) for w in hidden),
                      critic=bool(critic), log_std_init=float(log_std_init))
        if isinstance(action_space, gymnasium.spaces.Discrete):
            if int(action_space.start) != 0:
                raise LearningConfigError(f"Discrete action space starting at {action_space.start!r}; only start=0 is supported")
            return cls(action_kind="discrete", n_actions=int(action_space.n), **common)
        if isinstance(action_space, gymnasium.spaces.Box):
            return cls(action_kind="box", action_shape=tuple(int(s) for s in action_space.shape),
                       low=tuple(float(v) for v in np.ravel(action_space.low)),
                       high=tuple(float(v) for v in np.ravel(action_space.high)), **common)
        raise LearningConfigError(f"action space {action_space!r} is neither Discrete nor Box")

    @property
    def obs_dim(self) -> int:
        """Length of the flattened observation."""
        return int(np.prod(self.obs_shape, dtype=np.int64))

    @property
    def action_dim(self) -> int:
        """Length of the flattened Box action (0 for discrete)."""
        return int(np.prod(self.action_shape, dtype=np.int64)) if self.action_kind == "box" else 0

    @property
    def out_dim(self) -> int:
        """Outputs of the actor network: logits, or Gaussian means."""
        return self.n_actions if self.action_kind == "discrete" else self.action_dim

    def layer_sizes(self, out: int) -> list[tuple[int, int]]:
        """``(in, out)`` of each linear layer of a network ending in ``out`` outputs."""
        widths = [self.obs_dim, *self.hidden, out]
        return list(zip(widths[:-1], widths[1:]))

    @property
    def actor_size(self) -> int:
        """Length of the actor vector."""
        n = sum(i * o + o for i, o in self.layer_sizes(self.out_dim))
        return n + self.action_dim

    @property
    def critic_size(self) -> int:
        """Length of the critic vector (0 without a critic)."""
        return sum(i * o + o for i, o in self.layer_sizes(1)) if self.critic else 0

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, numbers, strings) for a policy file."""
        return {"obs_shape": list(self.obs_shape), "action_kind": self.action_kind,
                "action_shape": list(self.action_shape), "n_actions": self.n_actions,
                "low": list(self.low), "high": list(self.high), "hidden": list(self.hidden),
                "critic": self.critic, "log_std_init": self.log_std_init}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PolicySpec:
        """Inverse of :meth:`to_dict`."""
        return cls(obs_shape=tuple(d["obs_shape"]), action_kind=d["action_kind"],
                   action_shape=tuple(d["action_shape"]), n_actions=int(d["n_actions"]),
                   low=tuple(float(v) for v in d["low"]), high=tuple(float(v) for v in d["high"]),
                   hidden=tuple(int(w) for w in d["hidden"]), critic=bool(d["critic"]),
                   log_std_init=float(d["log_std_init"]))

    def env_action(self, u: np.ndarray) -> np.ndarray | int:
        """Map a sampled action to the environment's space.

        Args:
            u: an integer index (discrete), or normalized Box action, shape ``(action_dim,)``.

        Returns:
            ``int`` for discrete; for Box, float32 in ``action_shape``: bounded dimensions get
            ``low + (clip(u, -1, 1) + 1) (high - low) / 2``, unbounded ones ``u``.
        """
        if self.action_kind == "discrete":
            return int(u)
        low, high = np.array(self.low), np.array(self.high)
        bounded = np.isfinite(low) & np.isfinite(high)
        scaled = low + (np.clip(u, -1.0, 1.0) + 1.0) * 0.5 * np.where(bounded, high - low, 0.0)
        return np.where(bounded, scaled, u).astype(np.float32).reshape(self.action_shape)


def _mlp(sizes: list[tuple[int, int]], init: bool) -> nn.Sequential:
    """Linear layers with tanh between them; ``init=False`` skips torch's random init (the
    caller loads a vector at once; the init costs about 1.5 ms a rollout)."""
    layers: list[nn.Module] = []
    for k, (i, o) in enumerate(sizes):
        layers.append(nn.Linear(i, o) if init else nn.utils.skip_init(nn.Linear, i, o))
        if k < len(sizes) - 1:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class Policy(nn.Module):
    """The torch policy (float32) for a :class:`PolicySpec`; used for gradients and deployment.

    Args:
        spec: spaces and architecture.
        actor: actor vector, shape ``(spec.actor_size,)``; ``None`` keeps torch's default init.
        critic: critic vector, shape ``(spec.critic_size,)``, when ``spec.critic``.
    """

    def __init__(self, spec: PolicySpec, actor: np.ndarray | torch.Tensor | None = None,
                 critic: np.ndarray | torch.Tensor | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.actor = _mlp(spec.layer_sizes(spec.out_dim), init=actor is None)
        self.log_std = nn.Parameter(torch.full((spec.action_dim,), spec.log_std_init)) if spec.action_kind == "box" else None
        self.critic = _mlp(spec.layer_sizes(1), init=critic is None) if spec.critic else None
        if actor is not None:
            self.set_actor(actor)
        if critic is not None:
            self.set_critic(critic)

    def actor_parameters(self) -> list[nn.Parameter]:
        """Actor parameters in vector order."""
        params = list(self.actor.parameters())
        return params + ([self.log_std] if self.log_std is not None else [])

    def critic_parameters(self) -> list[nn.Parameter]:
        """Critic parameters in vector order (empty without a critic)."""
        return list(self.critic.parameters()) if self.critic is not None else []

    def set_actor(self, vector: np.ndarray | torch.Tensor) -> None:
        """Load the actor vector, shape ``(spec.actor_size,)``."""
        _load(self.actor_parameters(), vector, self.spec.actor_size, "actor")

    def set_critic(self, vector: np.ndarray | torch.Tensor) -> None:
        """Load the critic vector, shape ``(spec.critic_size,)``."""
        if self.critic is None:
            raise LearningConfigError("this policy has no critic (spec.critic is False); build it with critic=True")
        _load(self.critic_parameters(), vector, self.spec.critic_size, "critic")

    def distribution(self, obs: torch.Tensor) -> torch.distributions.Distribution:
        """Action distribution for observations of shape ``(T, obs_dim)``: batch shape ``(T,)``."""
        out = self.actor(obs)
        if self.spec.action_kind == "discrete":
            return torch.distributions.Categorical(logits=out)
        normal = torch.distributions.Normal(out, self.log_std.exp().expand_as(out))
        return torch.distributions.Independent(normal, 1)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """State values, shape ``(T,)``, in return units."""
        if self.critic is None:
            raise LearningConfigError("this policy has no critic (spec.critic is False); build it with critic=True")
        return self.critic(obs).squeeze(-1)

    @torch.no_grad()
    def act(self, obs: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray | int:
        """One environment action for one observation.

        Args:
            obs: an observation of ``spec.obs_shape``.
            rng: draws the action from the policy's distribution; ``None`` takes the mode
                (most likely discrete action, or the Gaussian mean).

        Returns:
            An element of the environment's action space.
        """
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32).reshape(1, -1))
        out = self.actor(x)[0].double().numpy()
        if self.spec.action_kind == "discrete":
            if rng is None:
                return int(np.argmax(out))
            return self.spec.env_action(_sample_categorical(out, rng))
        u = out if rng is None else out + np.exp(self.log_std.double().numpy()) * rng.standard_normal(out.shape)
        return self.spec.env_action(u)


def _load(params: list[nn.Parameter], vector: np.ndarray | torch.Tensor, size: int, what: str) -> None:
    v = torch.as_tensor(np.asarray(vector) if not isinstance(vector, torch.Tensor) else vector)
    if v.ndim != 1 or v.numel() != size:
        raise LearningConfigError(f"{what} vector has shape {tuple(v.shape)!r}; this spec needs ({size},)")
    torch.nn.utils.vector_to_parameters(v.to(torch.float32), params)


def _sample_categorical(logits: np.ndarray, rng: np.random.Generator) -> int:
    p = np.exp(logits - logits.max())
    cdf = np.cumsum(p)
    return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), len(p) - 1))


class NumpyActor:
    """The actor network in numpy (float64) for fast per-step acting inside rollouts.

    Args:
        spec: spaces and architecture.
        actor: actor vector, shape ``(spec.actor_size,)``, in :class:`Policy`'s layout.
    """

    def __init__(self, spec: PolicySpec, actor: np.ndarray) -> None:
        v = np.asarray(actor, dtype=np.float64)
        if v.shape != (spec.actor_size,):
            raise LearningConfigError(f"actor vector has shape {v.shape!r}; this spec needs ({spec.actor_size},)")
        self.spec = spec
        self.layers: list[tuple[np.ndarray, np.ndarray]] = []
        k = 0
        for i, o in spec.layer_sizes(spec.out_dim):
            w = v[k:k + i * o].reshape(o, i)
            k += i * o
            self.layers.append((w, v[k:k + o]))
            k += o
        self.std = np.exp(v[k:]) if spec.action_kind == "box" else np.empty(0)

    def forward(self, obs: np.ndarray) -> np.ndarray:
        """Logits or Gaussian means for one flattened observation, shape ``(out_dim,)``."""
        h = np.asarray(obs, dtype=np.float64).reshape(-1)
        last = len(self.layers) - 1
        for k, (w, b) in enumerate(self.layers):
            h = w @ h + b
            if k < last:
                h = np.tanh(h)
        return h

    def sample(self, obs: np.ndarray, rng: np.random.Generator) -> int | np.ndarray:
        """A sampled action: a discrete index, or the *normalized* Box action ``u``."""
        out = self.forward(obs)
        if self.spec.action_kind == "discrete":
            return _sample_categorical(out, rng)
        return out + self.std * rng.standard_normal(out.shape)


def init_particle(spec: PolicySpec, seed: int, *, output_gain: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Random initial actor and critic vectors for one particle.

    Orthogonal weights (gain sqrt(2) in hidden layers, ``output_gain`` on the actor's output,
    1 on the critic's), zero biases, ``log_std = spec.log_std_init``: CleanRL's recipe. A
    small ``output_gain`` starts every particle near the uniform (or unit-Gaussian) policy.

    Args:
        spec: spaces and architecture.
        seed: the only source of randomness (a ``torch.Generator`` seed).
        output_gain: gain of the actor's output layer, ``> 0``.

    Returns:
        ``(actor, critic)`` float64 vectors of shapes ``(actor_size,)`` and ``(critic_size,)``.
    """
    if not (output_gain > 0 and math.isfinite(output_gain)):
        raise LearningConfigError(f"output_gain {output_gain!r} must be finite and > 0")
    gen = torch.Generator().manual_seed(int(seed))
    policy = Policy(spec)

    def init(net: nn.Sequential, last_gain: float) -> None:
        linears = [m for m in net if isinstance(m, nn.Linear)]
        for k, lin in enumerate(linears):
            gain = last_gain if k == len(linears) - 1 else math.sqrt(2.0)
            with torch.no_grad():
                nn.init.orthogonal_(lin.weight, gain=gain, generator=gen)
                lin.bias.zero_()

    init(policy.actor, output_gain)
    actor = torch.nn.utils.parameters_to_vector(policy.actor_parameters()).detach().double().numpy().copy()
    critic = np.zeros(0)
    if policy.critic is not None:
        init(policy.critic, 1.0)
        critic = torch.nn.utils.parameters_to_vector(policy.critic_parameters()).detach().double().numpy().copy()
    return actor, critic


# ----------------------------------------------------------------------------------------------
# Policy files


@dataclass
class PolicyFile:
    """The content of a policy file.

    Attributes:
        env_id: Gymnasium id the particles were trained on.
        env_kwargs: keyword arguments of ``gymnasium.make`` (one dict, or one per particle).
        spec: spaces and architecture.
        actor: actor vectors, float32, shape ``(n, spec.actor_size)``.
        critic: critic vectors, shape ``(n, spec.critic_size)`` (``(n, 0)`` without a critic).
        final_returns: mean final return of each particle, shape ``(n,)`` (nan if unknown).
        info: plain-data training details (algorithm, budget, seed, ...).
    """

    env_id: str
    env_kwargs: dict[str, Any] | list[dict[str, Any]]
    spec: PolicySpec
    actor: np.ndarray
    critic: np.ndarray
    final_returns: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> int:
        """Index of the particle with the highest final return (0 if none is known)."""
        r = np.asarray(self.final_returns, dtype=float)
        return int(np.nanargmax(r)) if np.isfinite(r).any() else 0

    def policy(self, particle: int | None = None) -> Policy:
        """The torch policy of ``particle`` (default: :attr:`best`)."""
        i = self.best if particle is None else int(particle)
        if not 0 <= i < len(self.actor):
            raise LearningConfigError(f"particle {i!r} outside 0..{len(self.actor) - 1}")
        critic = self.critic[i] if self.spec.critic else None
        return Policy(self.spec, self.actor[i], critic)


def save_policy(path: str | os.PathLike[str], content: PolicyFile) -> None:
    """Write a policy file (``torch.save`` of plain data and tensors).

    Raises:
        PolicyFileError: the content holds something other than plain data, or the file
            cannot be written.
    """
    actor = np.asarray(content.actor, dtype=np.float32)
    critic = np.asarray(content.critic, dtype=np.float32).reshape(len(actor), -1)
    if actor.ndim != 2 or actor.shape[1] != content.spec.actor_size:
        raise PolicyFileError(f"actor has shape {actor.shape!r}; expected (particles, {content.spec.actor_size})")
    if critic.shape[1] != content.spec.critic_size:
        raise PolicyFileError(f"critic has shape {critic.shape!r}; expected (particles, {content.spec.critic_size})")
    data = {
        "format": FILE_FORMAT[0], "version": FILE_FORMAT[1],
        "env_id": plain_data(content.env_id, "env_id", PolicyFileError),
        "env_kwargs": plain_data(content.env_kwargs, "env_kwargs", PolicyFileError),
        "spec": content.spec.to_dict(),
        "actor": torch.from_numpy(actor.copy()),
        "critic": torch.from_numpy(critic.copy()),
        "final_returns": [float(r) for r in np.asarray(content.final_returns, dtype=float).reshape(-1)],
        "info": plain_data(content.info, "info", PolicyFileError),
    }
    save_file(path, data, PolicyFileError)


#: Entries of a policy file and their types (checked on loading, before anything reads them).
ENTRIES: dict[str, type | tuple[type, ...]] = {
    "env_id": str, "env_kwargs": (dict, list), "spec": dict, "actor": torch.Tensor, "critic": torch.Tensor,
    "final_returns": list, "info": dict,
}


def load_policy(path: str | os.PathLike[str]) -> PolicyFile:
    """Read a policy file with ``torch.load(weights_only=True)``.

    Every entry is checked here (types, the spec, the vectors' shapes against it, one return
    and keyword dict per particle), so a bad file fails when it is loaded, naming the entry.

    Raises:
        PolicyFileError: missing, unreadable, not a PyTorch file, not a pfmtwin policy file of a
            known version, or an entry missing or garbled.
    """
    p = os.fspath(path)
    fix = "write one with 'pfmtwin agent train ... --out FILE'"
    data = load_file(p, FILE_FORMAT, "policy file", PolicyFileError, fix, ENTRIES)

    def garbled(entry: str, why: str) -> PolicyFileError:
        return PolicyFileError(f"policy file {p!r} has a garbled entry {entry!r}: {why}; {fix}")

    try:
        spec = PolicySpec.from_dict(data["spec"])
    except KeyError as e:
        raise garbled("spec", f"no key {e.args[0]!r}") from e
    except (TypeError, ValueError, AttributeError) as e:  # LearningConfigError is a ValueError
        raise garbled("spec", " ".join(str(e).split())) from e
    actor, critic = (data[k].detach().to(torch.float32).numpy() for k in ("actor", "critic"))
    if actor.ndim != 2 or len(actor) < 1 or actor.shape[1] != spec.actor_size:
        raise garbled("actor", f"shape {actor.shape!r}; its spec needs (particles >= 1, {spec.actor_size})")
    n = len(actor)
    if critic.shape != (n, spec.critic_size):
        raise garbled("critic", f"shape {critic.shape!r}; its spec and {n} particles need {(n, spec.critic_size)!r}")
    returns = data["final_returns"]
    if len(returns) != n or not all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in returns):
        raise garbled("final_returns", f"{len(returns)} values; {n} particles need one number each")
    kwargs = data["env_kwargs"]
    if isinstance(kwargs, list) and (len(kwargs) != n or not all(isinstance(k, dict) for k in kwargs)):
        raise garbled("env_kwargs", f"a list of {len(kwargs)}; {n} particles need one dict for all or one each")
    return PolicyFile(env_id=data["env_id"], env_kwargs=kwargs, spec=spec, actor=actor, critic=critic,
                      final_returns=np.asarray(returns, dtype=float), info=data["info"])
