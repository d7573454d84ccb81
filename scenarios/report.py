"""The agent validation report: statistics, one self-contained HTML file and a JSON summary.

``pfmtwin validate`` runs a candidate policy and baselines on every scenario of a suite for
``K`` episodes each and hands the plain-data results to :func:`write_validation_report`,
which writes ``report.html`` (every style and image inline, no network, no JavaScript) and
``report.json`` beside it, and returns the JSON summary.

Statistics follow rliable (Agarwal et al., "Deep Reinforcement Learning at the Edge of the
Statistical Precipice", NeurIPS 2021), in numpy/scipy:

* **IQM**, the interquartile mean: the mean of the middle 50 % of the runs (episode returns),
  ``scipy.stats.trim_mean(x, 0.25)``, as ``rliable.metrics.aggregate_iqm``. Fewer than four
  runs trim nothing (plain mean). Per scenario: the IQM of its runs; over all scenarios: the
  IQM of every run pooled.
* **Stratified bootstrap 95 % confidence intervals** (percentile method): every replicate
  resamples, with replacement, the runs of each scenario (stratum, "task") independently, as
  many as it has, and recomputes the statistic; the interval spans the 2.5th to 97.5th
  percentile of the ``reps`` replicates. It covers the uncertainty of re-running the episodes
  on the same scenarios, not of picking other scenarios (rliable's ``task_bootstrap=False``).
* **Probability of improvement** ``P(X > Y)`` of the candidate X over a baseline Y: per
  scenario the Mann-Whitney statistic ``P(X > Y) + 0.5 P(X = Y)`` over all pairs of their
  runs; over all scenarios its mean over the scenarios where both completed an episode. Its CI
  resamples X's and Y's runs independently within each scenario.

The verdict calls the candidate *better* than a baseline on a scenario when the 95 % CI of
``P(candidate > baseline)`` lies wholly above 0.5, *worse* when wholly below, and *no clear
difference* otherwise; a scenario where either completed no episode is *not comparable*, and
one where either completed fewer than :data:`MIN_RUNS_TO_CALL` (5) gets no call (*too few
episodes*): the bootstrap of n runs only ever sees those n values, so with one run each the
interval is a point and with two or three it is far too narrow (complete separation of 3 runs
from 3 happens by chance with probability 1/20). The call over all scenarios needs that many in
every comparable scenario. The intervals are per scenario, not corrected for testing many
scenarios: with 20 scenarios and no real difference about one may come out either way by chance.

All randomness comes from ``numpy.random.default_rng(seed)``, drawn in a fixed order, and no
clock is read: the same results, ``reps`` and ``seed`` give the same bytes of HTML and JSON
(on the same numpy, scipy and matplotlib).

Input (``results``, see :func:`write_validation_report`): top-level keys ``title``, ``policy``,
``suite``, ``episodes`` (K), ``seed``, ``created``, ``software_version``, ``held_out`` (a
mapping ``{"trained_on": {...}, "evaluated_on": {...}}`` of lists such as ``samples`` and
``days``, or ``None`` when unknown), ``agents`` (the candidate first, then one or more
baselines) and ``scenarios``: a list of ``{"name", "url", "description", "agents": {agent:
entry}}``. Each entry has ``returns`` (list of finite floats, at most K: crashed episodes
have none), ``wall_losses``, ``refused``, ``limit_hits`` (counts), ``errors`` (list of
strings, one per crashed episode), ``steps`` (count), ``wall_time_s`` and
``instrument_time_s`` (s), and optionally ``before_png`` / ``after_png`` (PNG bytes or None).

JSON summary (``report.json``; returns are in reward units, dimensionless; times in s; a
statistic that cannot be computed is ``null``; every interval is ``[low, high]``):

``format``
    ``"pfmtwin-validation-report/1"``.
``title``, ``policy``, ``suite``, ``episodes``, ``seed``, ``created``, ``software_version``
    Copied from the results (``episodes`` = K per scenario per agent, ``seed`` = the run's).
``held_out``
    Copied from the results (``null`` when not stated): ``trained_on`` and ``evaluated_on``
    (``{"samples": [...], "days": [...]}``; ``null`` in a list: the backend's default), and any
    other list the results put beside them (e.g. ``held_out_samples``).
``held_out_overlap``
    ``{key: [values]}``: values of ``held_out["trained_on"][key]`` that also appear in
    ``held_out["evaluated_on"][key]`` (so not held out); ``{}`` when none.
``candidate``, ``baselines``
    The first agent; the others, in order.
``bootstrap``
    ``{"reps", "seed", "confidence": 0.95, "method"}`` of the confidence intervals.
``scenarios``
    One per scenario, in order: ``name``, ``url``, ``description``, ``agents`` and
    ``improvement``. ``agents[agent]``: ``returns`` (the runs, as given), ``n`` (episodes with a
    return), ``crashes`` (= ``len(errors)``), ``wall_losses``, ``refused``, ``limit_hits``,
    ``steps``, ``wall_time_s`` (s), ``instrument_time_s`` (s), ``wall_s_per_step`` and
    ``instrument_s_per_step`` (s per step, ``null`` without steps), ``mean``, ``iqm``,
    ``iqm_ci``, ``errors`` (the messages), ``has_before_png``, ``has_after_png``.
    ``improvement[baseline]``: ``p`` (P(candidate > baseline), 0..1), ``ci``, ``call``
    (``"better"``, ``"worse"``, ``"unclear"``, ``"too few episodes"`` or ``"not comparable"``).
``all_scenarios``
    ``agents[agent]``: ``n``, ``scenarios`` (how many have a return of it), ``crashes``,
    ``wall_losses``, ``refused``, ``limit_hits``, ``steps``, ``wall_time_s``,
    ``instrument_time_s`` (sums), ``wall_s_per_step``, ``instrument_s_per_step`` (sum of times /
    sum of steps), ``mean`` and ``iqm`` (of all runs pooled), ``iqm_ci`` (stratified).
    ``improvement[baseline]``: ``p`` (mean over comparable scenarios), ``ci`` (stratified),
    ``scenarios`` (how many were comparable), ``call``.
``verdict``
    ``text`` (the verdict as one paragraph), ``lines`` (the same, one sentence each) and
    ``baselines[baseline]``: ``better``, ``worse``, ``unclear``, ``too_few``, ``not_comparable``
    (counts of scenarios), ``scenarios`` (M, all of them) and ``overall`` (the call over all
    scenarios).
"""

from __future__ import annotations

import json
import math
import numbers
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from scipy import stats

from control.errors import PfmTwinError
from scenarios.report_html import fmt_p
from scenarios.report_html import render_html as _render

__all__ = [
    "ReportError",
    "bootstrap_improvement",
    "bootstrap_iqm",
    "iqm",
    "probability_of_improvement",
    "render_html",
    "summarize",
    "write_validation_report",
]

#: Coverage of every confidence interval.
CONFIDENCE = 0.95
#: The ``format`` of the JSON summary; bump it when a key changes meaning.
FORMAT = "pfmtwin-validation-report/1"
#: Fewer bootstrap replicates than this make the 2.5th/97.5th percentiles rest on a handful of
#: replicates (5 of 200): the interval's ends would move by more than its width's precision.
MIN_REPS = 200
#: Fewer completed episodes than this of either agent on a scenario and no better/worse call is
#: made there (module docstring): complete separation of n runs from n happens by chance with
#: probability 1/C(2n, n) = 0.5, 0.17, 0.05, 0.014, 0.004 for n = 1..5, and the percentile
#: bootstrap, blind to that, calls it certain.
MIN_RUNS_TO_CALL = 5
#: Keys every results mapping has (see the module docstring).
TOP_KEYS = ("title", "policy", "suite", "episodes", "seed", "created", "software_version", "held_out", "agents",
            "scenarios")
#: Keys every scenario has.
SCENARIO_KEYS = ("name", "url", "description", "agents")
#: Keys every agent entry of a scenario has (``before_png`` and ``after_png`` may be left out).
ENTRY_KEYS = ("returns", "wall_losses", "refused", "limit_hits", "errors", "steps", "wall_time_s",
              "instrument_time_s")
#: Counts of an agent entry: non-negative integers.
COUNT_KEYS = ("wall_losses", "refused", "limit_hits", "steps")
#: Durations of an agent entry: finite, non-negative, in s.
TIME_KEYS = ("wall_time_s", "instrument_time_s")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ReportError(PfmTwinError, ValueError):
    """The results handed to the report are malformed or cannot be compared; nothing was written."""


# ----------------------------------------------------------------------------------------------
# Statistics


def iqm(returns) -> float:
    """Interquartile mean: the mean of the middle 50 % of ``returns`` (25 % trimmed from each end).

    Args:
        returns: episode returns (reward units), one or more, finite.

    Returns:
        The IQM, as ``rliable.metrics.aggregate_iqm`` computes it.
    """
    x = np.asarray(returns, dtype=float).ravel()
    if x.size == 0:
        raise ReportError("iqm() got no returns; it needs at least one: pass the returns of completed episodes")
    return float(stats.trim_mean(x, 0.25))


def probability_of_improvement(x, y) -> float:
    """P(X > Y) + 0.5 P(X = Y) over all pairs of runs of one scenario (the Mann-Whitney U / (n_x n_y)).

    Args:
        x: returns of the candidate (one or more).
        y: returns of the baseline (one or more).

    Returns:
        The probability that a run of X beats a run of Y, ties counting half; 0.5 means no
        difference.
    """
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if x.size == 0 or y.size == 0:
        raise ReportError(f"probability_of_improvement() got {x.size} and {y.size} returns; it needs at least one "
                          "of each: leave out scenarios where an agent completed no episode")
    return float(_pairwise(x, y).mean())


def _pairwise(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``G[i, j]`` = 1 when ``x[i] > y[j]``, 0.5 when equal, else 0."""
    return (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])


def _percentile_interval(replicates: np.ndarray) -> tuple[float, float]:
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return float(low), float(high)


def _check_reps(reps) -> None:
    if not _is_int(reps) or reps < MIN_REPS:
        raise ReportError(f"reps is {reps!r}; the bootstrap needs an integer >= {MIN_REPS} replicates for stable "
                          "95 % intervals: pass reps=2000 (the default) or more")


def _check_reps_rng(reps, rng) -> None:
    _check_reps(reps)
    if not isinstance(rng, np.random.Generator):
        raise ReportError(f"rng is {rng!r}; it must be a numpy Generator so the intervals are reproducible: "
                          "pass np.random.default_rng(seed)")


def _tasks(tasks, what: str) -> list[np.ndarray]:
    arrays = [np.asarray(t, dtype=float).ravel() for t in tasks]
    if not arrays or any(a.size == 0 for a in arrays):
        sizes = [a.size for a in arrays]
        raise ReportError(f"{what} has run counts {sizes} per scenario; every scenario needs at least one run and "
                          "there must be one scenario or more: leave out scenarios without completed episodes")
    return arrays


def bootstrap_iqm(tasks: Sequence, *, reps: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """IQM of all runs pooled and its stratified-bootstrap 95 % confidence interval.

    Args:
        tasks: one sequence of returns per scenario (stratum); each needs one run or more, and
            they may differ in length. One scenario gives that scenario's IQM and CI.
        reps: bootstrap replicates (>= :data:`MIN_REPS`).
        rng: the source of every resample, drawn scenario by scenario in order.

    Returns:
        ``(iqm, low, high)``.
    """
    _check_reps_rng(reps, rng)
    arrays = _tasks(tasks, "bootstrap_iqm(tasks)")
    point = iqm(np.concatenate(arrays))
    # Resample within each scenario, then pool: the share of each scenario stays fixed.
    replicates = np.concatenate([a[rng.integers(0, a.size, size=(reps, a.size))] for a in arrays], axis=1)
    return (point, *_percentile_interval(stats.trim_mean(replicates, 0.25, axis=1)))


def _counts(indices: np.ndarray, n: int) -> np.ndarray:
    """How often each of ``n`` runs was drawn, per replicate (row) of ``indices``."""
    reps = indices.shape[0]
    flat = (indices + n * np.arange(reps)[:, None]).ravel()
    return np.bincount(flat, minlength=reps * n).reshape(reps, n)


def bootstrap_improvement(x_tasks: Sequence, y_tasks: Sequence, *, reps: int,
                          rng: np.random.Generator) -> tuple[float, float, float]:
    """Mean over scenarios of P(X > Y) and its stratified-bootstrap 95 % confidence interval.

    Args:
        x_tasks: one sequence of candidate returns per scenario (one run or more each).
        y_tasks: the baseline's, for the same scenarios in the same order.
        reps: bootstrap replicates (>= :data:`MIN_REPS`).
        rng: the source of every resample: per scenario in order, X's runs then Y's.

    Returns:
        ``(p, low, high)``, probabilities in [0, 1].
    """
    _check_reps_rng(reps, rng)
    xs, ys = _tasks(x_tasks, "bootstrap_improvement(x_tasks)"), _tasks(y_tasks, "bootstrap_improvement(y_tasks)")
    if len(xs) != len(ys):
        raise ReportError(f"bootstrap_improvement() got {len(xs)} scenarios of X and {len(ys)} of Y; pass the same "
                          "scenarios, in the same order, for both")
    points, replicates = [], np.zeros(reps)
    for x, y in zip(xs, ys):
        pairs = _pairwise(x, y)
        points.append(pairs.mean())
        # A resample's P(X > Y) = sum_ab count_x[a] count_y[b] G[a, b] / (n_x n_y): counts keep the
        # memory at reps x n instead of reps x n_x x n_y.
        count_x = _counts(rng.integers(0, x.size, size=(reps, x.size)), x.size)
        count_y = _counts(rng.integers(0, y.size, size=(reps, y.size)), y.size)
        replicates += ((count_x @ pairs) * count_y).sum(axis=1) / (x.size * y.size)
    return (float(np.mean(points)), *_percentile_interval(replicates / len(xs)))


def _call(low: float, high: float, fewest_runs: int) -> str:
    if fewest_runs < MIN_RUNS_TO_CALL:
        return "too few episodes"
    return "better" if low > 0.5 else "worse" if high < 0.5 else "unclear"


# ----------------------------------------------------------------------------------------------
# Validation of the results


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _need_keys(mapping, keys: Sequence[str], where: str) -> None:
    if not isinstance(mapping, Mapping):
        raise ReportError(f"{where} is a {type(mapping).__name__}, not a mapping; it must be a dict with keys "
                          f"{', '.join(keys)} (see scenarios.report's docstring)")
    missing = [key for key in keys if key not in mapping]
    if missing:
        raise ReportError(f"{where} has no key {missing[0]!r}" + (f" (nor {missing[1:]})" if missing[1:] else "")
                          + f"; it needs {', '.join(keys)}: add them (see scenarios.report's docstring)")


def _check_png(value, where: str) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, (bytes, bytearray, memoryview)) or not bytes(value[:8]) == _PNG_SIGNATURE:
        shown = repr(bytes(value[:16])) if isinstance(value, (bytes, bytearray, memoryview)) else repr(value)[:40]
        raise ReportError(f"{where} is {shown}, not PNG bytes (they start with {_PNG_SIGNATURE!r}); pass the "
                          "bytes of a PNG file, or None when there is no image")
    return bytes(value)


def _check_entry(entry, episodes: int, where: str) -> dict:
    _need_keys(entry, ENTRY_KEYS, where)
    returns = entry["returns"]
    if isinstance(returns, (str, bytes)) or not isinstance(returns, (Sequence, np.ndarray)):
        raise ReportError(f"{where}['returns'] is {returns!r}; it must be a list of episode returns (floats, one "
                          "per completed episode)")
    values = []
    for i, value in enumerate(returns.ravel().tolist() if isinstance(returns, np.ndarray) else returns):
        if not _is_real(value) or not math.isfinite(float(value)):
            raise ReportError(f"{where}['returns'][{i}] is {value!r}; every return must be a finite number: fix the "
                              "reward, or drop the episode from returns and list it in errors")
        values.append(float(value))
    if len(values) > episodes:
        raise ReportError(f"{where}['returns'] has {len(values)} returns, more than results['episodes'] = {episodes}; "
                          "give at most one return per episode, or fix results['episodes']")
    clean = {"returns": values}
    for key in COUNT_KEYS:
        value = entry[key]
        if not _is_int(value) or value < 0:
            raise ReportError(f"{where}[{key!r}] is {value!r}; it must be an integer >= 0 (a count): pass the count")
        clean[key] = int(value)
    if clean["wall_losses"] > episodes:
        raise ReportError(f"{where}['wall_losses'] is {clean['wall_losses']}, more than results['episodes'] = "
                          f"{episodes}; an episode loses the wall at most once: count episodes, not steps")
    for key in TIME_KEYS:
        value = entry[key]
        if not _is_real(value) or not math.isfinite(float(value)) or value < 0:
            raise ReportError(f"{where}[{key!r}] is {value!r}; it must be a finite duration >= 0 s: pass the "
                              "measured seconds")
        clean[key] = float(value)
    errors = entry["errors"]
    if isinstance(errors, (str, bytes)) or not isinstance(errors, Sequence) \
            or not all(isinstance(e, str) for e in errors):
        raise ReportError(f"{where}['errors'] is {errors!r}; it must be a list of strings, one message per crashed "
                          "episode (an empty list when none crashed)")
    clean["errors"] = list(errors)
    for key in ("before_png", "after_png"):
        clean[key] = _check_png(entry.get(key), f"{where}[{key!r}]")
    return clean


def _scalars(values, where: str) -> list:
    ok = isinstance(values, Sequence) and not isinstance(values, (str, bytes)) and all(
        v is None or isinstance(v, str) or (_is_real(v) and math.isfinite(float(v))) for v in values)
    if not ok:
        raise ReportError(f"{where} is {values!r}; it must be a list of sample numbers, days or names (None: the "
                          "backend's default), e.g. [11, 12]")
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def _check_held_out(held_out) -> dict | None:
    """A clean copy of ``results["held_out"]``; keys beside the two sides (lists) are kept for the JSON."""
    if held_out is None:
        return None
    where = "results['held_out']"
    _need_keys(held_out, ("trained_on", "evaluated_on"), where)
    clean: dict = {}
    for side, part in held_out.items():
        if not isinstance(side, str):
            raise ReportError(f"{where} has key {side!r}; its keys must be strings such as 'trained_on'")
        if side not in ("trained_on", "evaluated_on"):
            clean[side] = _scalars(part, f"{where}[{side!r}]")
            continue
        if not isinstance(part, Mapping) or not all(isinstance(key, str) for key in part):
            raise ReportError(f"{where}[{side!r}] is {part!r}; it must be a mapping such as "
                              "{'samples': [1], 'days': [0]}")
        clean[side] = {key: _scalars(values, f"{where}[{side!r}][{key!r}]") for key, values in part.items()}
    return clean


def _validated(results) -> dict:
    """A clean copy of ``results`` (plain Python types), or :class:`ReportError` naming what is wrong."""
    _need_keys(results, TOP_KEYS, "results")
    episodes = results["episodes"]
    if not _is_int(episodes) or episodes < 1:
        raise ReportError(f"results['episodes'] is {episodes!r}; it must be an integer >= 1 (episodes per scenario "
                          "per agent): run at least one episode and pass that K")
    agents = results["agents"]
    if isinstance(agents, str) or not isinstance(agents, Sequence) or len(agents) < 2 \
            or not all(isinstance(a, str) and a for a in agents) or len(set(agents)) != len(agents):
        raise ReportError(f"results['agents'] is {agents!r}; it must list two or more distinct agent names, the "
                          "candidate first and then the baselines, e.g. ['policy', 'random', 'heuristic']")
    for key in ("title", "policy", "suite", "created", "software_version"):
        if not isinstance(results[key], str):
            raise ReportError(f"results[{key!r}] is {results[key]!r}; it must be a string")
    if not _is_int(results["seed"]):
        raise ReportError(f"results['seed'] is {results['seed']!r}; it must be the integer seed of the episodes")
    scenarios = results["scenarios"]
    if isinstance(scenarios, (str, Mapping)) or not isinstance(scenarios, Sequence) or not scenarios:
        raise ReportError(f"results['scenarios'] is {scenarios!r}; it must be a non-empty list of scenarios: "
                          "run the suite on at least one scenario")
    clean_scenarios, names = [], set()
    for i, scenario in enumerate(scenarios):
        where = f"results['scenarios'][{i}]"
        _need_keys(scenario, SCENARIO_KEYS, where)
        for key in ("name", "url", "description"):
            if not isinstance(scenario[key], str):
                raise ReportError(f"{where}[{key!r}] is {scenario[key]!r}; it must be a string")
        name = scenario["name"]
        if not name or name in names:
            raise ReportError(f"{where}['name'] is {name!r}; scenario names must be non-empty and distinct: rename it")
        names.add(name)
        where = f"results['scenarios'][{i}] ({name!r})['agents']"
        entries = scenario["agents"]
        _need_keys(entries, agents, where)
        extra = [a for a in entries if a not in agents]
        if extra:
            raise ReportError(f"{where} has agent {extra[0]!r}, which results['agents'] = {list(agents)!r} does not "
                              "list: add it there or drop it here")
        clean_scenarios.append({key: scenario[key] for key in ("name", "url", "description")}
                               | {"agents": {a: _check_entry(entries[a], episodes, f"{where}[{a!r}]")
                                             for a in agents}})
    if not any(s["agents"][a]["returns"] for s in clean_scenarios for a in agents):
        errors = [e for s in clean_scenarios for a in agents for e in s["agents"][a]["errors"]]
        raise ReportError(f"no agent has a single return in any of the {len(clean_scenarios)} scenarios; there is "
                          "nothing to compare: fix what made the episodes fail and run again"
                          + (f" (first error: {errors[0]!r})" if errors else " (and no error was recorded)"))
    return {key: results[key] for key in ("title", "policy", "suite", "created", "software_version")} \
        | {"episodes": int(episodes), "seed": int(results["seed"]), "agents": list(agents),
           "held_out": _check_held_out(results["held_out"]), "scenarios": clean_scenarios}


# ----------------------------------------------------------------------------------------------
# The summary


def _per_step(seconds: float, steps: int) -> float | None:
    return seconds / steps if steps else None


def _overlap(held_out: dict | None) -> dict:
    if held_out is None:
        return {}
    trained, evaluated = held_out["trained_on"], held_out["evaluated_on"]
    return {key: [v for v in evaluated[key] if v in trained[key]]
            for key in evaluated if key in trained and any(v in trained[key] for v in evaluated[key])}


def _interval(point_low_high) -> tuple[float | None, list[float] | None]:
    if point_low_high is None:
        return None, None
    point, low, high = point_low_high
    return point, [low, high]


def _summary(data: dict, reps: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    agents = data["agents"]
    candidate, baselines = agents[0], agents[1:]
    scenarios = []
    # The draws go scenario by scenario, agents then baselines, then the aggregates: a fixed order.
    for scenario in data["scenarios"]:
        cells = {}
        for agent in agents:
            entry = scenario["agents"][agent]
            runs = entry["returns"]
            point, ci = _interval(bootstrap_iqm([runs], reps=reps, rng=rng) if runs else None)
            cells[agent] = {
                "returns": runs, "n": len(runs), "crashes": len(entry["errors"]),
                **{key: entry[key] for key in (*COUNT_KEYS, *TIME_KEYS)},
                "wall_s_per_step": _per_step(entry["wall_time_s"], entry["steps"]),
                "instrument_s_per_step": _per_step(entry["instrument_time_s"], entry["steps"]),
                "mean": float(np.mean(runs)) if runs else None, "iqm": point, "iqm_ci": ci,
                "errors": entry["errors"],
                "has_before_png": entry["before_png"] is not None, "has_after_png": entry["after_png"] is not None,
            }
        improvement = {}
        for baseline in baselines:
            x, y = scenario["agents"][candidate]["returns"], scenario["agents"][baseline]["returns"]
            if x and y:
                p, ci = _interval(bootstrap_improvement([x], [y], reps=reps, rng=rng))
                improvement[baseline] = {"p": p, "ci": ci, "call": _call(*ci, min(len(x), len(y)))}
            else:
                improvement[baseline] = {"p": None, "ci": None, "call": "not comparable"}
        scenarios.append({key: scenario[key] for key in ("name", "url", "description")}
                         | {"agents": cells, "improvement": improvement})

    overall_agents = {}
    for agent in agents:
        cells = [s["agents"][agent] for s in scenarios]
        tasks = [c["returns"] for c in cells if c["returns"]]
        point, ci = _interval(bootstrap_iqm(tasks, reps=reps, rng=rng) if tasks else None)
        sums = {key: sum(c[key] for c in cells) for key in ("crashes", *COUNT_KEYS, *TIME_KEYS)}
        overall_agents[agent] = {
            "n": sum(c["n"] for c in cells), "scenarios": len(tasks), **sums,
            "wall_s_per_step": _per_step(sums["wall_time_s"], sums["steps"]),
            "instrument_s_per_step": _per_step(sums["instrument_time_s"], sums["steps"]),
            "mean": float(np.mean(np.concatenate(tasks))) if tasks else None, "iqm": point, "iqm_ci": ci,
        }
    overall_improvement = {}
    for baseline in baselines:
        pairs = [(s["agents"][candidate]["returns"], s["agents"][baseline]["returns"]) for s in scenarios
                 if s["improvement"][baseline]["p"] is not None]
        if pairs:
            p, ci = _interval(bootstrap_improvement([x for x, _ in pairs], [y for _, y in pairs], reps=reps, rng=rng))
            fewest = min(min(len(x), len(y)) for x, y in pairs)
            overall_improvement[baseline] = {"p": p, "ci": ci, "scenarios": len(pairs), "call": _call(*ci, fewest)}
        else:
            overall_improvement[baseline] = {"p": None, "ci": None, "scenarios": 0, "call": "not comparable"}

    summary = {
        "format": FORMAT,
        **{key: data[key] for key in ("title", "policy", "suite", "episodes", "seed", "created", "software_version",
                                      "held_out")},
        "held_out_overlap": _overlap(data["held_out"]),
        "candidate": candidate, "baselines": baselines,
        "bootstrap": {"reps": reps, "seed": seed, "confidence": CONFIDENCE,
                      "method": "percentile; runs resampled with replacement within each scenario"},
        "scenarios": scenarios,
        "all_scenarios": {"agents": overall_agents, "improvement": overall_improvement},
    }
    summary["verdict"] = _verdict(summary)
    return summary


def _verdict(summary: dict) -> dict:
    """Plain sentences a microscopist can read, saying no more than the intervals support."""
    candidate, scenarios = summary["candidate"], summary["scenarios"]
    total = len(scenarios)
    lines, per_baseline = [], {}
    for baseline in summary["baselines"]:
        calls = [s["improvement"][baseline]["call"] for s in scenarios]
        counts = {"better": calls.count("better"), "worse": calls.count("worse"),
                  "unclear": calls.count("unclear"), "too_few": calls.count("too few episodes"),
                  "not_comparable": calls.count("not comparable")}
        overall = summary["all_scenarios"]["improvement"][baseline]
        per_baseline[baseline] = {**counts, "scenarios": total, "overall": overall["call"]}
        sentence = (f"{candidate} beats {baseline} on {counts['better']} of {total} scenario{'s' * (total != 1)} "
                    f"(95 % CI of P({candidate} > {baseline}) above 0.5), is beaten on {counts['worse']} "
                    f"(CI below 0.5), no clear difference on {counts['unclear']}")
        if counts["not_comparable"]:
            sentence += f", not comparable on {counts['not_comparable']} (an agent completed no episode)"
        if counts["too_few"]:
            sentence += (f", too few episodes to call on {counts['too_few']} (fewer than {MIN_RUNS_TO_CALL} "
                         "completed by an agent)")
        if overall["p"] is None:
            sentence += "; no scenario allows a comparison overall."
        else:
            judged = {"better": f"{candidate} is better overall", "worse": f"{candidate} is worse overall",
                      "unclear": "overall the difference is not clear",
                      "too few episodes": "too few episodes for a call"}[overall["call"]]
            sentence += (f"; over the {overall['scenarios']} comparable scenario{'s' * (overall['scenarios'] != 1)} "
                         f"P({candidate} > {baseline}) = {fmt_p(overall['p'], overall['ci'])}: {judged}.")
        lines.append(sentence)
    everyone = summary["all_scenarios"]["agents"]
    events = [(key, what) for key, what in (("wall_losses", "Episodes that lost the wall"),
                                            ("crashes", "episodes that crashed"),
                                            ("refused", "commands the safety guard refused"))
              if any(agent[key] for agent in everyone.values())]
    if events:
        lines.append("; ".join(f"{what}: " + ", ".join(f"{name} {agent[key]}" for name, agent in everyone.items())
                               for key, what in events)
                     + f" (of {summary['episodes'] * total} planned episodes each).")
    if summary["episodes"] < MIN_RUNS_TO_CALL:
        lines.append(f"Only {summary['episodes']} episode{'s' * (summary['episodes'] != 1)} per scenario: too few "
                     f"to call a difference; run {MIN_RUNS_TO_CALL} or more.")
    if summary["held_out_overlap"]:
        shared = "; ".join(f"{key} {', '.join(map(str, values))}" for key, values in summary["held_out_overlap"].items())
        lines.append(f"Not all of it is held out: {shared} were both trained on and evaluated on.")
    return {"text": " ".join(lines), "lines": lines, "baselines": per_baseline}


def summarize(results: Mapping, *, reps: int = 2000, seed: int = 0) -> dict:
    """Validate ``results`` and compute the JSON summary (module docstring) without writing anything.

    Args:
        results: what ``pfmtwin validate`` collected (module docstring, :func:`write_validation_report`).
        reps: bootstrap replicates per interval (>= :data:`MIN_REPS`).
        seed: seed of the bootstrap's ``numpy.random.default_rng`` (integer >= 0).

    Returns:
        The summary, plain JSON-ready data.

    Raises:
        ReportError: ``results`` is malformed (the message names the value and the fix).
    """
    _check_reps(reps)
    if not _is_int(seed) or seed < 0:
        raise ReportError(f"seed is {seed!r}; it must be an integer >= 0 (the bootstrap's seed): pass e.g. seed=0")
    return _summary(_validated(results), int(reps), int(seed))


# ----------------------------------------------------------------------------------------------
# Writing


def render_html(results: Mapping, summary: dict) -> str:
    """The self-contained HTML page of ``results`` and their ``summary`` (:func:`summarize`)."""
    return _render(_validated(results), summary, format_name=FORMAT, min_runs=MIN_RUNS_TO_CALL)


def _replace_atomically(files: list[tuple[Path, bytes]]) -> None:
    """Write every file to a temporary beside it, then rename them all into place."""
    temporaries: list[tuple[str, Path]] = []
    # mkstemp makes its file private (0600); the report gets the usual permissions (umask).
    umask = os.umask(0)
    os.umask(umask)
    try:
        for path, content in files:
            descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            temporaries.append((name, path))
            os.chmod(name, 0o666 & ~umask)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
        for name, path in temporaries:
            os.replace(name, path)
    finally:
        for name, _ in temporaries:
            if os.path.exists(name):
                os.unlink(name)


def write_validation_report(results: Mapping, html_path: str | os.PathLike, *, reps: int = 2000,
                            seed: int = 0) -> dict:
    """Write ``html_path`` (self-contained, no network needed) and ``html_path`` with suffix ``.json``.

    Args:
        results: what ``pfmtwin validate`` collected (keys in the module docstring): title,
            policy, suite, episodes (K), seed, created, software_version, held_out, agents (the
            candidate first) and scenarios, each with per-agent returns, counts, times (s) and
            before/after PNG bytes.
        html_path: where the HTML goes (e.g. ``out/report.html``); the JSON summary goes beside
            it (``out/report.json``). Missing folders are made.
        reps: bootstrap replicates per confidence interval (>= :data:`MIN_REPS`).
        seed: seed of the bootstrap's ``numpy.random.default_rng``; same results and seed give
            the same bytes.

    Returns:
        The JSON summary (keys in the module docstring).

    Raises:
        ReportError: malformed results, reps or seed, or an ``html_path`` ending in ``.json``;
            nothing is written then.
    """
    html_path = Path(html_path)
    json_path = html_path.with_suffix(".json")
    if json_path == html_path:
        raise ReportError(f"html_path is {str(html_path)!r}; the JSON summary would overwrite it: name the report "
                          "*.html, e.g. report.html")
    summary = summarize(results, reps=reps, seed=seed)
    page = render_html(results, summary).encode("utf-8")
    text = (json.dumps(summary, indent=2, allow_nan=False) + "\n").encode("utf-8")
    html_path.parent.mkdir(parents=True, exist_ok=True)
    _replace_atomically([(json_path, text), (html_path, page)])
    return summary
