"""Fitting the surrogate model to transitions, and its evaluation against held-out ones.

:func:`fit_surrogate` trains the MLP of :mod:`learning.surrogate_model` (seeded, one thread,
same data and seed -> the same bytes of the model file). Two mirror symmetries of the physics
are built in: x -> -x with the domains swapped maps a negative pulse onto a positive one (the
network only sees positive pulses, in that canonical frame), and y -> -y doubles the training
set. :func:`evaluate_surrogate` gives the RMS error of the predicted wall change against
held-out transitions of the source next to the no-change baseline, and the speed-up of the
environment on ``surrogate://`` over the source (:func:`env_speed`). See
docs/decisions/0005-surrogate.md.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium
import numpy as np
import torch

import control
import learning
from learning.files import plain_data, save_file
from learning.surrogate_data import Transitions, TransitionsError
from learning.surrogate_model import (
    FILE_FORMAT,
    SCALE,
    SurrogateFileError,
    SurrogateModel,
    canonical_frame,
    features,
    load_model,
    wall_at,
)
from learning.svpg import one_torch_thread

__all__ = ["env_speed", "evaluate_surrogate", "fit_surrogate"]


def _targets(y: np.ndarray, before: np.ndarray, after: np.ndarray, ys: np.ndarray,
             period: float | None) -> np.ndarray:
    """Measured change of the wall on the local grids ``ys``, / SCALE."""
    return np.stack([wall_at(row_y, y, a - b, period) for row_y, a, b in zip(ys, after, before)]) / SCALE


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
    raw, sign = canonical_frame(raw, points)
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
        "film": plain_data(film, "film", SurrogateFileError),
        "instrument": plain_data(instrument, "instrument", SurrogateFileError),
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
    content["provenance"] = plain_data(provenance, "provenance", SurrogateFileError)
    save_file(out, content, SurrogateFileError)
    return provenance


def env_speed(url: str, steps: int, *, env_kwargs: Mapping[str, Any] | None = None, seed: int = 0,
              warmup: int = 20) -> dict[str, float]:
    """Steps per second of ``pfmtwin/DomainWall-v0`` on ``url`` under seeded random actions (wall clock).

    Construction, the first reset and ``warmup`` steps are not timed (the first steps load
    compiled kernels and FFT plans: 0.2 s in a fresh process, a quarter of a 300-step
    measurement); later resets (after an episode ends) are.
    """
    env = gymnasium.make(learning.ENV_ID, microscope=url, **dict(env_kwargs or {}))

    def run(n: int) -> None:
        for _ in range(n):
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()

    try:
        env.action_space.seed(seed)
        env.reset(seed=seed)
        run(warmup)
        start = time.perf_counter()
        run(steps)
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
