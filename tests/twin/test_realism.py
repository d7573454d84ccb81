"""The twin's images against real PbTiO3 PFM scans (tests/data/pfm-real), through the contract.

Every statistic of the panel (``control.analysis.STATISTICS``) measured on twin scans of
several samples and days must lie inside the range the four real scans span. The absolute
phases are left out: they are the lock-in's phase offset, set by the operator. The real scans
are 1-5 um wide; the twin is scanned at the size and pixel count of each, as ``pfmtwin
realism`` does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import control
from control.analysis import STATISTICS, image_statistics
from control.nsid import read_scans

REAL = Path(__file__).resolve().parents[1] / "data" / "pfm-real"
CHECKED = [name for name in STATISTICS if name not in ("phase_up", "phase_down")]


@pytest.fixture(scope="module")
def real() -> list[control.ScanResult]:
    scans = [result for _, result in read_scans(REAL)]
    assert len(scans) == 4, f"expected the four PTO scans in {REAL}"
    return scans


@pytest.fixture(scope="module")
def ranges(real) -> dict[str, tuple[float, float]]:
    values = [image_statistics(r) for r in real]
    return {name: (min(v[name] for v in values), max(v[name] for v in values)) for name in CHECKED}


@pytest.fixture(scope="module", params=[(1, 0), (2, 1), (3, 0), (4, 1), (5, 2)], ids=lambda p: f"seed{p[0]}-day{p[1]}")
def twin_panels(request, real) -> list[dict[str, float]]:
    seed, day = request.param
    with control.connect(f"twin://?seed={seed}&day={day}") as scope:
        center = scope.info().hardware.scan_range / 2
        return [image_statistics(scope.scan(control.ScanSpec(center=(center, center), size=r.spec.size,
                                                             pixels=r.spec.pixels))) for r in real]


@pytest.mark.parametrize("name", CHECKED)
def test_every_statistic_lies_inside_the_real_range(name, twin_panels, ranges):
    lo, hi = ranges[name]
    values = [panel[name] for panel in twin_panels]
    assert all(lo <= v <= hi for v in values), f"{name}: twin {np.round(values, 4)} outside the real [{lo:.4g}, {hi:.4g}]"


def test_two_phase_states_about_180_degrees_apart(twin_panels):
    for panel in twin_panels:
        assert 120.0 <= panel["phase_separation"] <= 180.0
        assert np.isfinite(panel["phase_up"]) and np.isfinite(panel["phase_down"])
