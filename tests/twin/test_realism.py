"""The twin's images against real PbTiO3 PFM scans (../shared/data/pfm-real, PHYSICS.md)."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

import control
from control.analysis import amplitude_statistics, domains, phase_axis

# shared/ lies beside the checkout (on developers' machines and in CI); PFMTWIN_SHARED overrides.
SHARED = Path(os.environ.get("PFMTWIN_SHARED", Path(__file__).resolve().parents[3] / "shared"))
REAL = SHARED / "data" / "pfm-real"
FILES = sorted(REAL.glob("PTO_Funakubo000*.h5"))


def real_amplitudes() -> list[np.ndarray]:
    out = []
    for path in FILES:
        with h5py.File(path, "r") as f:
            out.append(f["Measurement_000/Channel_1/Channel_1/Channel_1"][()].astype(np.float64))
    return out


@pytest.fixture(scope="module")
def twin_scans() -> list[control.ScanResult]:
    spec = control.ScanSpec(center=(1e-6, 1e-6), size=(1e-6, 1e-6), pixels=(256, 256))
    scans = []
    for seed in (1, 2, 3):
        with control.connect(f"twin://?seed={seed}") as scope:
            scans.append(scope.scan(spec))
    return scans


def test_the_real_data_is_there():
    assert len(FILES) == 4, f"expected the four PTO scans in {REAL}"


def test_noise_statistics_match_real_scans(twin_scans):
    real = [amplitude_statistics(a) for a in real_amplitudes()]
    twin = [amplitude_statistics(s.amplitude) for s in twin_scans]
    for key in ("pixel_noise", "line_cv"):
        lo, hi = min(r[key] for r in real), max(r[key] for r in real)
        for t in twin:
            assert lo <= t[key] <= hi, f"twin {key}={t[key]:.3f} outside the real range [{lo:.3f}, {hi:.3f}]"
    for t in twin:
        # PHYSICS.md: median amplitudes 40-200 pm; line-median CV 0.17-0.39.
        assert 40e-12 <= t["median"] <= 200e-12
        assert 0.17 <= t["line_cv"] <= 0.39


def test_two_phase_states_180_degrees_apart(twin_scans):
    for scan in twin_scans:
        axis = phase_axis(scan.phase)
        d = domains(scan)
        up = np.median(scan.phase[d > 0])
        down = np.median(scan.phase[d < 0])
        assert down - up == pytest.approx(180.0, abs=15.0)
        assert up == pytest.approx(axis, abs=15.0)


def test_walls_show_as_an_amplitude_dip_whose_width_grows_with_tip_radius():
    def dip_width(radius: float) -> float:
        url = f"twin://?seed=4&grid=128&field=1e-6&init=wall&disorder=0&noise=0&tip_radius={radius}"
        with control.connect(url) as scope:
            scan = scope.scan(control.ScanSpec(center=(0.5e-6, 0.5e-6), size=(0.5e-6, 0.5e-6), pixels=(256, 64)))
        profile = scan.amplitude.mean(axis=0)  # the wall runs roughly along y
        plateau = np.median(profile)
        below = profile < plateau / 2
        return below.sum() * (0.5e-6 / 256)

    widths = [dip_width(r) for r in (10e-9, 25e-9, 60e-9)]
    assert widths[0] < widths[1] < widths[2]
    # Tian et al. 2008: imaged widths 20-200 nm for 10-300 nm tips.
    assert 5e-9 < widths[1] < 100e-9
