"""A coupled theory-experiment loop: theory predicts, an agent chooses, the microscope answers.

Each step of an episode on ``pfmtwin/DomainWall-v0``:

1. the environment's last scan of its window is the observation;
2. ``candidates`` pulses are proposed (seeded random actions of the environment, mapped to pulses
   next to the wall by its own ``pulse_map``, inside the limits);
3. the theory service (``Theory.predict``, :mod:`control.intersect.theory`) predicts the wall after
   each, from a film built from the observed image;
4. guided: the candidate whose predicted wall gains most curvature (the environment's own
   measure, whose gain is its reward) is sent; unguided: the first candidate (a random pulse);
5. the microscope applies it and rescans; predicted and measured wall displacement are recorded.

Which phase is "up" is not in an image. The loop learns it from its own first pulse that
writes: a positive bias writes down domains, so the phase of what it switched is the down
phase. Until then, steps are taken unguided (``calibrating``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import gymnasium
import numpy as np

import learning
from control.analysis import domains, phase_axis
from control.contract import wrap_phase
from control.intersect.theory import TheoryClient


def _near(y: np.ndarray, y0: float, reach: float) -> np.ndarray:
    lines = np.abs(y - y0) <= reach
    return lines if lines.any() else np.abs(y - y0) == np.min(np.abs(y - y0))


def _up_phase(before, after, amplitude: float) -> float | None:
    """The phase of an up domain, from the pixels a pulse of ``amplitude`` V switched (None: none switched)."""
    axis = phase_axis(before.phase)
    switched = domains(before, axis=axis) != domains(after, axis=axis)
    if np.count_nonzero(switched) < 2:
        return None
    written = float(np.rad2deg(np.angle(np.mean(np.exp(1j * np.deg2rad(after.phase[switched]))))))
    return float(wrap_phase(written + (180.0 if amplitude > 0 else 0.0)))


def run_episode(microscope: str, theory: str, *, guided: bool, steps: int = 8, candidates: int = 6, seed: int = 0,
                local: float = 40e-9, env_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """One episode of the loop; returns its per-step records and its curvature gain.

    Args:
        microscope: backend URL of the sample (e.g. an ``intersect://`` microscope service).
        theory: ``intersect://`` URL of a service with the ``Theory`` capability.
        guided: choose by theory's prediction (else send the first, random candidate).
        steps: pulses in the episode.
        candidates: pulses proposed per step.
        seed: seed of the proposals (the same for guided and unguided: the same first candidates).
        local: half-height of the wall segment around the pulse whose displacement is compared, m.
        env_kwargs: further ``DomainWallConfig`` fields.
    """
    env = gymnasium.make(learning.ENV_ID, microscope=microscope, max_steps=steps, **dict(env_kwargs or {}))
    rng = np.random.default_rng(seed)
    records: list[dict[str, Any]] = []
    up_phase = None
    try:
        _, info = env.reset(seed=seed)
        de = env.unwrapped
        start_curvature = info.get("curvature", math.nan)
        with TheoryClient(theory) as oracle:
            for step in range(steps):
                wall, observed = de.wall, de.last_scan
                actions = rng.uniform(-1.0, 1.0, (candidates, 4))
                pulses = [de.pulse_map(a, de.window, wall, de.limits) for a in actions]
                prediction = None
                choice = 0
                if up_phase is not None:
                    answer = oracle.predict(observed, [(p.x, p.y, p.amplitude, p.width) for p in pulses], up_phase)
                    gains = []
                    for p in answer.predictions:
                        x = p.wall_x.to_numpy()
                        gains.append(de.curvature_measure(dataclasses.replace(wall, x=x)) - de.curvature_measure(wall)
                                     if np.all(np.isfinite(x)) else -math.inf)
                    if guided:
                        choice = int(np.argmax(gains))
                    prediction = answer.predictions[choice]
                pulse = pulses[choice]
                _, reward, terminated, truncated, info = env.step(actions[choice])
                after_wall, after = de.wall, de.last_scan
                near = _near(wall.y, pulse.y, local)
                record = {"step": step, "pulse": pulse._asdict(), "reward": float(reward),
                          "calibrating": up_phase is None, "lost": bool(terminated)}
                if after_wall.crossing and wall.crossing:
                    record["measured_local_m"] = float(np.mean(after_wall.x[near] - wall.x[near]))
                    record["measured_mean_m"] = float(np.mean(after_wall.x - wall.x))
                if prediction is not None:
                    x = prediction.wall_x.to_numpy()
                    record["predicted_local_m"] = float(np.mean(x[near] - wall.x[near]))
                    record["predicted_mean_m"] = float(np.mean(x - wall.x))
                    record["predicted_gain"] = float(gains[choice])
                    record["theory_s"] = float(prediction.seconds)
                    record["written_area_m2"] = float(prediction.written_area)
                if up_phase is None:
                    up_phase = _up_phase(observed, after, pulse.amplitude)
                records.append(record)
                if terminated or truncated:
                    break
        end_curvature = info.get("curvature", math.nan)
    finally:
        env.close()
    return {"guided": guided, "seed": seed, "steps": len(records), "up_phase": up_phase,
            "return": float(sum(r["reward"] for r in records)), "lost": any(r["lost"] for r in records),
            "curvature_start": start_curvature, "curvature_end": end_curvature,
            "curvature_gain": end_curvature - start_curvature, "records": records}


def summarize(episodes: list[dict[str, Any]]) -> dict[str, Any]:
    """Theory against experiment (displacement errors) and guided against unguided (curvature gain)."""
    both = [r for e in episodes for r in e["records"] if "predicted_local_m" in r and "measured_local_m" in r]
    compared = [r for r in both if math.isfinite(r["predicted_local_m"])]
    out: dict[str, Any] = {"episodes": len(episodes), "compared_steps": len(compared),
                           "theory_lost_the_wall": len(both) - len(compared)}
    if compared:
        pred = np.array([r["predicted_local_m"] for r in compared])
        meas = np.array([r["measured_local_m"] for r in compared])
        out["local_displacement_nm"] = {
            "rms_error": float(np.sqrt(np.mean((pred - meas) ** 2)) * 1e9),
            "rms_measured": float(np.sqrt(np.mean(meas**2)) * 1e9),
            "correlation": float(np.corrcoef(pred, meas)[0, 1]) if len(compared) > 2 and np.std(pred) > 0 else None,
            "sign_agreement": float(np.mean(np.sign(pred) == np.sign(meas))),
        }
        out["theory_s_median"] = float(np.median([r["theory_s"] for r in compared]))
    for arm in (True, False):
        mine = [e for e in episodes if e["guided"] is arm]
        if not mine:
            continue
        returns = [e["return"] for e in mine]
        gains = [e["curvature_gain"] for e in mine if math.isfinite(e["curvature_gain"])]
        out["guided" if arm else "unguided"] = {
            "episodes": len(mine),
            "return_mean": float(np.mean(returns)),
            "return_sem": float(np.std(returns, ddof=1) / math.sqrt(len(returns))) if len(returns) > 1 else None,
            "curvature_gain_mean": float(np.mean(gains)) if gains else None,
            "walls_lost": sum(e["lost"] for e in mine)}
    return out


def run(sample: str, theory: str, out, *, episodes: int = 4, steps: int = 8, candidates: int = 6,
        seed: int = 0) -> dict[str, Any]:
    """The loop on an INTERSECT bus of its own: guided and unguided episodes on the same samples.

    A Mosquitto broker starts on loopback, with a theory service (the twin's physics with the
    ``theory`` URL's options) and, for each episode and arm, a microscope service of a fresh copy
    of ``sample`` with the episode's film seed (``seed=`` of the URL + the episode; both arms of an
    episode get the same film and the same proposals). Everything stops at the end, on every path.

    Writes ``coupled.json`` (the summary and every step) and ``coupled.png`` (predicted against
    measured local wall displacement) to ``out``.
    """
    import json
    import sys
    from pathlib import Path

    from tqdm import tqdm

    from control.intersect.broker import Mosquitto
    from control.intersect.service import on_the_bus
    from control.urls import split, with_options

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = int(split(sample)[2].get("seed", 0))
    results = []
    with Mosquitto() as broker, on_the_bus(broker.url, "pfmtwin.lab.theory.-.twin-physics", theory=theory) as oracle, \
            tqdm(total=2 * episodes, desc="coupled episodes", unit="episode", file=sys.stderr) as bar:
        for e in range(episodes):
            for guided in (True, False):
                backend = with_options(sample, seed=base + e)
                name = f"pfmtwin.lab.pfm.-.sample-{e}-{'guided' if guided else 'unguided'}"
                with on_the_bus(broker.url, name, backend=backend) as microscope:
                    results.append(run_episode(microscope.url, oracle.url, guided=guided, steps=steps,
                                               candidates=candidates, seed=seed + e))
                results[-1]["sample"] = backend
                bar.update()
    summary = summarize(results)
    summary.update(sample=sample, theory=theory, steps=steps, candidates=candidates, seed=seed)
    (out / "coupled.json").write_text(json.dumps({"summary": summary, "episodes": results}, indent=1))
    _plot(results, out / "coupled.png")
    summary["picture"] = str(out / "coupled.png")
    return summary


def _plot(episodes: list[dict[str, Any]], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 4))
    for arm, colour in ((True, "tab:blue"), (False, "tab:orange")):
        rows = [r for e in episodes if e["guided"] is arm for r in e["records"]
                if "predicted_local_m" in r and "measured_local_m" in r]
        a.scatter([r["predicted_local_m"] * 1e9 for r in rows], [r["measured_local_m"] * 1e9 for r in rows], s=14,
                  color=colour, label="guided" if arm else "unguided")
        returns = [e["return"] for e in episodes if e["guided"] is arm]
        b.bar(0 if arm else 1, np.mean(returns) if returns else 0.0, color=colour,
              yerr=np.std(returns) / max(len(returns), 1) ** 0.5 if returns else 0.0)
    lim = max([abs(v) for v in a.get_xlim() + a.get_ylim()] + [1.0])
    a.plot([-lim, lim], [-lim, lim], color="grey", lw=0.8)
    a.set(xlabel="predicted wall shift near the pulse, nm", ylabel="measured, nm", title="theory vs experiment")
    a.legend()
    b.set_xticks([0, 1], ["theory-guided", "unguided"])
    b.set(ylabel="return per episode (curvature gained, 1/(100 nm))", title="choice of pulse")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
