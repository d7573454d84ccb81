"""The wall-pulse experiment of the ORNL talk this project started from (Vasudevan, OLCF 2023).

Scan, locate the domain wall, apply bias pulses at random points along it with random voltage
and width, re-scan every few pulses, and save the session (HDF5) and a before/after picture.
Runs on any backend URL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

import control
from control.analysis import domains, phase_axis
from control.recording import Recorder
from scenarios.plans import wall_pulse
from scenarios.plots import before_after_png
from scenarios.scenario import ScanPlan, WallPulsePlan


@dataclass
class DemoConfig:
    """Arguments of the wall-pulse experiment.

    Attributes:
        url: backend URL.
        out: output folder (session.h5, before_after.png).
        pulses: number of bias pulses.
        rescan_every: re-scan after this many pulses.
        seed: seed of the experiment's own choices (pulse sites, voltages, widths).
        center: image center (x, y), m (None: the middle of the scanner range).
        size: image side, m (None: half the scanner range, at most 1 um).
        pixels: points per line and lines.
        line_rate: Hz.
        voltage: (min, max) pulse magnitude, V; the sign is random.
        width: (min, max) pulse width, s (log-uniform).
    """

    url: str = "twin://?seed=3&init=wall&field=2e-6&scanner=closed"
    out: Path = Path("out/demo")
    pulses: int = 20
    rescan_every: int = 5
    seed: int = 1
    center: tuple[float, float] | None = None
    size: float | None = None
    pixels: int = 128
    line_rate: float = 1.0
    voltage: tuple[float, float] = (4.0, 10.0)
    width: tuple[float, float] = (1e-5, 1e-1)


def run(config: DemoConfig, progress: bool = True) -> dict:
    """Run the experiment; return a summary (also written as summary.json)."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    session = out / "session.h5"
    rng = np.random.default_rng(config.seed)
    metadata = {"sample": "PbTiO3 film (twin)", "project": "pfmtwin demo", "investigator": "pfmtwin demo"}
    plan = WallPulsePlan(pulses=config.pulses, rescan_every=config.rescan_every, bias=config.voltage,
                         width=config.width, scan=ScanPlan(center=config.center, size=config.size,
                                                           pixels=config.pixels, line_rate=config.line_rate))
    with Recorder(control.connect(config.url), session, metadata=metadata, overwrite=True) as scope:
        bar = tqdm(total=config.pulses + 2 + config.pulses // config.rescan_every, desc="wall-pulse experiment",
                   unit="step", disable=not progress)

        def tick(what: str) -> None:
            bar.set_postfix_str(what)
            bar.update()

        result = wall_pulse(scope, plan, rng, tick)
        bar.close()
        elapsed = scope.now()
    before, after, records = result.before, result.after, result.pulses
    picture = before_after_png(before, after, records, out / "before_after.png")
    axis = phase_axis(before.phase)  # one axis for both scans, so "switched" means the state changed
    changed = float(np.mean(domains(before, axis=axis) != domains(after, axis=axis)))
    summary = {
        "session": str(session),
        "picture": str(picture),
        "pulses": len(records),
        "instrument_time_s": elapsed,
        "fraction_of_pixels_switched": round(changed, 4),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
