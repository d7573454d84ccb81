"""``pfmtwin validate``: is a trained agent fit to go to the real instrument?

Runs the policy and two baselines on every scenario of a suite, ``K`` episodes each, on
``pfmtwin/DomainWall-v0`` over the scenario's instrument (its backend, served process and
limits), and writes one self-contained HTML report with a JSON summary beside it
(:func:`scenarios.report.write_validation_report`).

The agents:

* ``policy``: the policy file's best particle, acting on its mean (deterministic);
* ``random``: uniform random actions (random position along the wall, offset, bias, width);
* ``heuristic``: the talk's loop in the environment's action space: a random point *on* the
  wall (offset 0), random bias (magnitude and sign) and random width.

A scenario is a condition (a day, noise, a tip, limits, a link) over a family of films: its
backend URL names the first film (``seed=F``) and the day, and episode ``k`` runs on film
``F + k``, freshly opened (``reset(seed=seed + k, options={"sample": F + k})``). Every agent
meets the same films, so returns are paired (common random numbers), and a deterministic policy
is judged on ``K`` different films, not on one film ``K`` times. A served scenario (``serve =
"emulate"``) starts a fresh process for every episode, holding film ``F + k`` of its twin options
(a served instrument keeps what was written on it). A film that offers no usable wall at the
start of an episode is reported as such (the same for every agent). The report says which films
and days the policy was trained on (its file's ``microscope``, ``samples`` and ``days``) and
which it was evaluated on.

Safety events: ``refused`` counts commands the guard refused (the environment builds pulses
inside the limits, so any refusal is a defect worth seeing), ``limit_hits`` the pulses that sat
at a limit (bias or width at its bound: the agent is pushing against the limits).
"""

from __future__ import annotations

import dataclasses
import io
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import control
from control.analysis import NoWallError
from control.errors import LimitError, PfmTwinError
from control.urls import split, with_options
from scenarios.report import write_validation_report
from scenarios.run import serving
from scenarios.scenario import Scenario, load_suite

__all__ = ["AGENTS", "ValidationError", "trained_on", "validate"]

#: The candidate first, then the baselines.
AGENTS = ("policy", "random", "heuristic")


class ValidationError(PfmTwinError, ValueError):
    """A validation that cannot run: a bad episode count, a policy not for DomainWall-v0."""


def _film(url: str) -> tuple[int | None, int | None]:
    """(film seed, day) a backend URL names (None: not given, the backend's default)."""
    try:
        _, _, raw = split(url)
    except PfmTwinError:
        return None, None

    def number(key: str) -> int | None:
        return int(raw[key]) if raw.get(key, "").isdigit() else None
    return number("seed"), number("day")


def trained_on(env_kwargs: dict) -> dict:
    """The films and days a policy met in training, from its file's environment keywords."""
    seed, day = _film(str(env_kwargs.get("microscope", "")))
    samples = env_kwargs.get("samples") or ([seed] if seed is not None else [])
    days = env_kwargs.get("days") or ([day if day is not None else 0])
    return {"samples": sorted(int(s) for s in samples), "days": sorted(int(d) for d in days)}


def _png(rgb: np.ndarray | None) -> bytes | None:
    """A rendered wall (``env.render()``) as PNG bytes, enlarged so a browser shows it sharp."""
    if rgb is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image

    big = np.repeat(np.repeat(rgb, 6, axis=0), 6, axis=1)
    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, big, format="png")
    return buffer.getvalue()


def _at_limit(pulse: dict, limits: control.SafetyLimits) -> bool:
    return (abs(pulse["amplitude"]) >= limits.bias_max * (1 - 1e-9)
            or pulse["width"] <= limits.pulse_width_min * (1 + 1e-9)
            or pulse["width"] >= limits.pulse_width_max * (1 - 1e-9))


def _new_results() -> dict:
    return {"returns": [], "wall_losses": 0, "refused": 0, "limit_hits": 0, "errors": [], "steps": 0,
            "wall_time_s": 0.0, "instrument_time_s": 0.0, "before_png": None, "after_png": None}


def _episode(agent: str, env: Any, policy: Any, rng: np.random.Generator, k: int, seed: int,
             options: dict | None, out: dict) -> None:
    """Run episode ``k`` of one agent into ``out``; never raises for the episode's failure."""
    started = time.monotonic()
    try:
        try:
            obs, info = env.reset(seed=seed + k, options=options)
        except NoWallError as exc:  # the film's doing, not the agent's: the same for every agent
            out["errors"].append(f"episode {k}: the film offered no usable wall at the start: {exc}")
            return
        t0 = info["time"]
        if k == 0:
            out["before_png"] = _png(env.render())
        total, done = 0.0, False
        while not done:
            if agent == "policy":
                action = policy.act(obs, None)
            elif agent == "random":
                action = env.action_space.sample()
            else:  # on the wall, random bias (magnitude and sign) and width
                u, v, w = rng.uniform(-1.0, 1.0, size=3)
                action = np.array([u, 0.0, v, w], dtype=np.float32)
            obs, reward, terminated, truncated, info = env.step(action)
            total += float(reward)
            out["steps"] += 1
            out["limit_hits"] += _at_limit(info["pulse"], env.unwrapped.limits)
            out["wall_losses"] += bool(terminated)
            done = terminated or truncated
        out["returns"].append(total)
        out["instrument_time_s"] += info["time"] - t0
        if k == 0:
            out["after_png"] = _png(env.render())
    except LimitError as exc:
        out["refused"] += 1
        out["errors"].append(f"episode {k}: refused by the safety guard: {exc}")
    except PfmTwinError as exc:
        out["errors"].append(f"episode {k}: {type(exc).__name__}: {exc}")
    finally:
        out["wall_time_s"] += time.monotonic() - started


def validate(policy_path: str | os.PathLike, suite: str | os.PathLike, out: str | os.PathLike, *,
             episodes: int = 8, seed: int = 0, particle: int | None = None, max_steps: int | None = None,
             progress: bool = True) -> dict:
    """Run the policy and the baselines on every scenario of ``suite``; write the report ``out``.

    Args:
        policy_path: a DomainWall-v0 policy file from ``pfmtwin agent train``.
        suite: a folder of scenario files or a matrix file; each scenario gives the instrument
            (backend URL or served process), its limits and the film and day.
        out: the HTML report to write (``.html``); the JSON summary goes beside it (``.json``).
        episodes: episodes per scenario and agent, ``>= 1``.
        seed: episode ``k`` resets with ``seed + k``; also seeds the baselines and the bootstrap.
        particle: the policy file's particle (default: its best).
        max_steps: pulses per episode (default: the policy file's environment's).
        progress: show a progress bar.

    Returns:
        The JSON summary (see :mod:`scenarios.report`).

    Raises:
        ScenarioError: a bad suite; ValidationError: bad arguments or a policy for another
            environment; PolicyFileError: an unreadable policy file. Nothing is run then.
    """
    from learning.policies import load_policy

    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValidationError(f"episodes={episodes!r}; run at least 1 episode per scenario and agent")
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
        raise ValidationError(f"max_steps={max_steps!r} must be an integer >= 1, or None for the policy's own")
    out = Path(out)
    if out.suffix != ".html":
        raise ValidationError(f"out={str(out)!r} must name an .html file (the JSON summary goes beside it)")
    scenarios: list[Scenario] = load_suite(suite)
    pf = load_policy(policy_path)
    if pf.env_id != "pfmtwin/DomainWall-v0":
        raise ValidationError(f"the policy in {str(policy_path)!r} was trained on {pf.env_id!r}; validation runs "
                              "pfmtwin/DomainWall-v0 policies (train one with `pfmtwin agent train`)")
    index = pf.best if particle is None else int(particle)
    policy = pf.policy(index)
    kwargs = dict(pf.env_kwargs[index] if isinstance(pf.env_kwargs, list) else pf.env_kwargs)
    trained = trained_on(kwargs)
    for key in ("samples", "days"):  # each scenario names its own film and day
        kwargs.pop(key, None)
    if max_steps is not None:
        kwargs["max_steps"] = max_steps
    kwargs["reopen"] = "seeded"
    kwargs["render_mode"] = "rgb_array"
    results: dict = {
        "title": f"Agent validation: {Path(policy_path).name}", "policy": str(policy_path), "suite": str(suite),
        "episodes": episodes, "seed": seed, "software_version": control.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),  # file metadata, not physics
        "agents": list(AGENTS), "scenarios": [],
    }
    evaluated = {"samples": set(), "days": set()}
    with tqdm(total=len(scenarios) * len(AGENTS), desc="validate", unit="agent-scenario", file=sys.stderr,
              disable=not progress) as bar:
        for scenario in scenarios:
            entry: dict = {"name": scenario.name, "url": scenario.backend.describe(),
                           "description": scenario.description, "agents": {}}
            base, day = _film(scenario.backend.url or f"twin://?{scenario.backend.twin}")
            films = [base] if base is None else [base + k for k in range(episodes)]
            entry["films"], entry["day"] = films, day if day is not None else 0
            evaluated["samples"].update(f for f in films if f is not None)
            evaluated["days"].add(entry["day"])
            for agent in AGENTS:
                bar.set_postfix_str(f"{scenario.name}: {agent}")
                rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(AGENTS.index(agent),)))
                entry["agents"][agent] = numbers = _new_results()
                if scenario.backend.serve:
                    # A served instrument keeps what was written on it: each episode gets a fresh
                    # process holding film F + k, so every agent meets the same untouched films.
                    for k in range(episodes):
                        twin = scenario.backend.twin if base is None else _with_seed(scenario.backend.twin, base + k)
                        with serving(dataclasses.replace(scenario.backend, twin=twin)) as url:
                            _run_in(agent, pf.env_id, {**kwargs, "microscope": url}, scenario, policy, rng,
                                    [k], seed, None, numbers)
                else:
                    options = (lambda k: None) if base is None else (lambda k: {"sample": base + k})
                    _run_in(agent, pf.env_id, {**kwargs, "microscope": scenario.backend.url}, scenario, policy,
                            rng, range(episodes), seed, options, numbers)
                bar.update()
            results["scenarios"].append(entry)
    results["held_out"] = {
        "trained_on": trained,
        "evaluated_on": {k: sorted(v for v in values if v is not None) for k, values in evaluated.items()},
        "held_out_samples": sorted(s for s in evaluated["samples"] if s is not None and s not in trained["samples"]),
        "held_out_days": sorted(d for d in evaluated["days"] if d not in trained["days"]),
    }
    return write_validation_report(results, out, seed=seed)


def _with_seed(twin: str, film: int) -> str:
    """Twin options (``seed=3&grid=64``) with the film seed set."""
    return with_options(f"twin://?{twin}", seed=film).partition("?")[2]


def _run_in(agent: str, env_id: str, kwargs: dict, scenario: Scenario, policy: Any, rng: np.random.Generator,
            ks, seed: int, options, out: dict) -> None:
    """Open the environment on the scenario's instrument and limits, run episodes ``ks``, close it."""
    from learning.rollout import make_env

    try:
        env = make_env(env_id, {**kwargs, "connect": _limited(scenario.limits)}, check=False)
    except PfmTwinError as exc:
        out["errors"].append(f"cannot open the environment: {exc}")
        return
    try:
        env.action_space.seed(int(rng.integers(2**31)))
        for k in ks:
            _episode(agent, env, policy, rng, k, seed, options(k) if callable(options) else options, out)
    finally:
        env.close()


def _limited(limits: dict):
    """``connect`` for the environment: the scenario's limits tighten the instrument's."""
    def connect(url: str) -> control.Microscope:
        return control.connect(url, limits=limits or None)
    return connect

