"""The twin's images against real PbTiO3 PFM scans (tests/data/pfm-real), through the contract.

Every statistic of the panel (``control.analysis.STATISTICS``) measured on twin scans of
several samples and days is held against the range the four real scans span. The absolute
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
from scenarios import realism

pytestmark = pytest.mark.slow  # one 45 s fixture scans the twin at nine samples and days

REAL = Path(__file__).resolve().parents[1] / "data" / "pfm-real"
CHECKED = [name for name in STATISTICS if name not in ("phase_up", "phase_down")]


@pytest.fixture(scope="module")
def real() -> list[control.ScanResult]:
    scans = [result for _, result in read_scans(REAL)]
    assert len(scans) == 4, f"expected the four PTO scans in {REAL}"
    return scans


@pytest.fixture(scope="module")
def real_panels(real) -> list[dict[str, float]]:
    return [image_statistics(r) for r in real]


@pytest.fixture(scope="module")
def ranges(real) -> dict[str, tuple[float, float]]:
    values = [image_statistics(r) for r in real]
    return {name: (min(v[name] for v in values), max(v[name] for v in values)) for name in CHECKED}


#: Samples and days the twin is held against the real scans with: seeds 1-4 at two days each
#: (issue 10's acceptance set), and one more sample on a third day.
CASES = [*((seed, day) for seed in (1, 2, 3, 4) for day in (0, 1)), (5, 2)]


@pytest.fixture(scope="module")
def twin_panels(real) -> list[dict[str, float]]:
    """The panel of every twin scan: each case scanned at the size and pixels of each real scan."""
    panels = []
    for seed, day in CASES:
        with control.connect(f"twin://?seed={seed}&day={day}") as scope:
            center = scope.info().hardware.scan_range / 2
            for r in real:
                spec = control.ScanSpec(center=(center, center), size=r.spec.size, pixels=r.spec.pixels)
                panels.append(image_statistics(scope.scan(spec)))
    return panels


@pytest.mark.parametrize("name", CHECKED)
def test_the_typical_twin_value_of_every_statistic_lies_inside_the_real_range(name, twin_panels, ranges):
    lo, hi = ranges[name]
    values = np.array([panel[name] for panel in twin_panels])
    assert lo <= np.nanmedian(values) <= hi, f"{name}: twin median {np.nanmedian(values):.4g} outside [{lo:.4g}, {hi:.4g}]"


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"seed={s},day={d}" for s, d in CASES])
def test_no_statistic_differs_from_the_real_scans_by_the_paired_rule(case, twin_panels, real_panels):
    """``pfmtwin realism``'s default rule: scan by scan, twin minus real, no statistic's difference
    is more than the real scans' spread explains (family-wise false-alarm rate 10 %)."""
    panels = twin_panels[case * len(real_panels):(case + 1) * len(real_panels)]
    level = realism.ALPHA / len(CHECKED)
    for name in CHECKED:
        test = realism.paired_test(name, [p[name] for p in panels], [p[name] for p in real_panels])
        assert test["p"] is not None and test["p"] >= level, f"{CASES[case]} {name}: {test} (level {level:.2g})"


def test_most_twin_values_lie_inside_the_real_range(twin_panels, ranges):
    # Four real scans of one film span a narrow range: a fifth real scan would have about 60 % of
    # its values inside (the four, each held against the other three, have 50 %). The twin's five
    # samples and days at four scan sizes: four values in five inside, every statistic's median inside.
    inside = [ranges[n][0] <= panel[n] <= ranges[n][1] for panel in twin_panels for n in CHECKED]
    assert np.mean(inside) >= 0.8, f"only {np.mean(inside):.0%} of the twin's values lie inside the real ranges"


def test_two_phase_states_about_180_degrees_apart(twin_panels):
    for panel in twin_panels:
        assert 90.0 <= panel["phase_separation"] <= 180.0
        assert np.isfinite(panel["phase_up"]) and np.isfinite(panel["phase_down"])
