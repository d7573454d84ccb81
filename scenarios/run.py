"""``pfmtwin run SCENARIO.toml --out DIR``: run one scenario and record everything.

Writes into ``DIR``:

* ``session.h5``: every command, its instrument time and result (``control.recording``), with
  the scenario's metadata plus ``scenario`` (its name) and ``scenario_seed``; a policy plan whose
  environment had to reopen the microscope writes ``session-2.h5``, ... for the later ones;
* ``before_after.png``: the first and last image, pulse sites marked;
* ``summary.json``: what ran and what happened (see :func:`run_scenario`).

A scenario that names ``serve = "emulate"`` or ``"cosim"`` starts that process on loopback
(:class:`control.served.Served`) and stops it, on every path, when the run ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

import control
from control.analysis import domains, phase_axis
from control.errors import PfmTwinError, RecordingError
from control.recording import Recorder
from control.served import Served
from scenarios.plans import wall_pulse
from scenarios.plots import before_after_png
from scenarios.scenario import Backend, PolicyPlan, Scenario

__all__ = ["run_scenario", "serving"]


@contextlib.contextmanager
def serving(backend: Backend) -> Iterator[str]:
    """The URL to connect to: the scenario's own, or that of the process it asks to start."""
    if not backend.serve:
        yield backend.url
        return
    args = ["--listen", "socket://127.0.0.1:0", "--twin", backend.twin]
    if backend.serve == "emulate":
        args += ["--speed", backend.speed, "--faults", backend.faults, "--fault-seed", str(backend.fault_seed)]
    with Served(backend.serve, *args) as served:
        yield served.url


def _metadata(scenario: Scenario) -> dict:
    meta = dict(scenario.metadata)
    meta.setdefault("scenario", scenario.name)
    meta.setdefault("scenario_seed", scenario.seed)
    if scenario.backend.serve:
        meta.setdefault("served", scenario.backend.describe())
    return meta


def _switched(before: control.ScanResult, after: control.ScanResult) -> float:
    """Share of pixels whose domain state changed (one phase axis for both scans)."""
    if before.amplitude.shape != after.amplitude.shape:
        return float("nan")
    axis = phase_axis(before.phase)
    return float(np.mean(domains(before, axis=axis) != domains(after, axis=axis)))


def run_scenario(scenario: Scenario, out: str | os.PathLike, *, overwrite: bool = False,
                 progress: bool = True) -> dict:
    """Run ``scenario``, recording to ``out/session.h5``; return the summary (also ``summary.json``).

    Returns:
        ``{"scenario", "backend", "seed", "plan", "session", "sessions", "picture", "pulses",
        "scans", "refused" (pulses the guard refused), "no_wall", "instrument_time_s",
        "wall_time_s", "fraction_of_pixels_switched", "episodes" (policy plans: per-episode
        return, steps, wall lost)}``.

    Raises:
        RecordingError: ``out`` already holds a session and ``overwrite`` is false (nothing is
            started or written then).
        PfmTwinError: from the backend (a link that failed for good, an instrument error).
    """
    out = Path(out)
    session = out / "session.h5"
    if session.exists() and not overwrite:
        raise RecordingError(f"{str(session)!r} already exists; choose another --out or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    summary: dict = {"scenario": scenario.name, "file": str(scenario.path), "backend": scenario.backend.describe(),
                     "seed": scenario.seed, "plan": scenario.plan.kind}
    with serving(scenario.backend) as url:
        summary["url"] = url
        if isinstance(scenario.plan, PolicyPlan):
            summary.update(_run_policy(scenario, url, out, overwrite, progress))
        else:
            summary.update(_run_wall_pulse(scenario, url, out, overwrite, progress))
    summary["wall_time_s"] = round(time.monotonic() - started, 3)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _run_wall_pulse(scenario: Scenario, url: str, out: Path, overwrite: bool, progress: bool) -> dict:
    plan = scenario.plan
    rng = np.random.default_rng(scenario.seed)
    scope = control.connect(url, limits=scenario.limits or None)
    try:
        recorder = Recorder(scope, out / "session.h5", metadata=_metadata(scenario), overwrite=overwrite)
    except BaseException:
        scope.close()
        raise
    scans = 1 + plan.pulses // plan.rescan_every + 1
    with recorder, tqdm(total=plan.pulses + scans, desc=scenario.name, unit="step", file=sys.stderr,
                        disable=not progress) as bar:
        def tick(what: str) -> None:
            bar.set_postfix_str(what)
            bar.update()

        result = wall_pulse(recorder, plan, rng, tick)
        elapsed = recorder.now()
    picture = before_after_png(result.before, result.after, result.pulses, out / "before_after.png")
    return {"session": str(out / "session.h5"), "sessions": [str(out / "session.h5")], "picture": str(picture),
            "pulses": len(result.pulses), "scans": result.scans, "refused": result.refused,
            "no_wall": result.no_wall, "instrument_time_s": elapsed,
            "fraction_of_pixels_switched": round(_switched(result.before, result.after), 4)}


def _run_policy(scenario: Scenario, url: str, out: Path, overwrite: bool, progress: bool) -> dict:
    from learning.cli import run_policy

    plan = scenario.plan
    sessions: list[Recorder] = []

    def connect(target: str) -> Recorder:
        """Every microscope the environment opens is recorded (a reopen starts session-2.h5)."""
        name = "session.h5" if not sessions else f"session-{len(sessions) + 1}.h5"
        scope = control.connect(target, limits=scenario.limits or None)
        try:
            recorder = Recorder(scope, out / name, metadata=_metadata(scenario), overwrite=overwrite)
        except BaseException:
            scope.close()
            raise
        sessions.append(recorder)
        return recorder

    episodes: list[dict] = []
    pulses = 0
    with tqdm(total=plan.episodes, desc=scenario.name, unit="episode", file=sys.stderr,
              disable=not progress) as bar:
        for record in run_policy(plan.policy, url, episodes=plan.episodes, seed=scenario.seed,
                                 particle=plan.particle, sample=plan.sample, env_overrides=plan.env,
                                 connect=connect):
            if not episodes or episodes[-1]["episode"] != record["episode"]:
                episodes.append({"episode": record["episode"], "return": 0.0, "steps": 0, "lost": False})
            current = episodes[-1]
            current["return"] += record["reward"]
            current["steps"] += 1
            current["lost"] = current["lost"] or bool(record["terminated"])
            pulses += "pulse" in record
            bar.set_postfix_str(f"return {current['return']:+.3f}")
            if record["terminated"] or record["truncated"]:
                bar.update()
    if not sessions:
        raise PfmTwinError(f"the policy in {str(plan.policy)!r} opened no microscope; nothing was recorded")
    from control.recording import read_session

    recorded = read_session(sessions[0].path)
    scans = recorded.scans()
    picture = None
    if scans:
        picture = str(before_after_png(scans[0], scans[-1], recorded.pulses(), out / "before_after.png"))
    return {"session": str(sessions[0].path), "sessions": [str(r.path) for r in sessions], "picture": picture,
            "pulses": pulses, "scans": len(scans), "refused": [], "no_wall": 0,
            "instrument_time_s": float(recorded.commands[-1].end) if recorded.commands else 0.0,
            "fraction_of_pixels_switched": round(_switched(scans[0], scans[-1]), 4) if scans else None,
            "episodes": episodes}
