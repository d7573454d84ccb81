"""``pfmtwin realism``: the twin's statistics panel against the real PbTiO3 scans in tests/data/pfm-real."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

import control
from scenarios import realism
from scenarios.cli import main

REAL = Path(__file__).resolve().parents[1] / "data" / "pfm-real"
PNG = b"\x89PNG\r\n\x1a\n"


def run(tmp_path: Path, *args: str) -> int:
    return main(["realism", *args, "--out", str(tmp_path)])


def test_a_noise_free_twin_is_outside_the_real_range(tmp_path, capsys):
    url = "twin://?seed=1&noise=0"
    assert run(tmp_path, str(REAL), "--backend", url) == 1
    out = capsys.readouterr()
    data = json.loads((tmp_path / "realism.json").read_text())
    assert "pixel_noise" in data["outside"][url], "without noise no image has the real scans' pixel noise"
    assert data["exit_status"] == 1
    assert [Path(r["file"]).name for r in data["real"]] == [f"PTO_Funakubo000{i}.h5" for i in range(1, 5)]
    (backend,) = data["backends"]
    assert len(backend["scans"]) == 4 and backend["center"] == [5e-6, 5e-6], "default: the scanner's middle"
    for real, scan in zip(data["real"], backend["scans"]):
        assert scan["spec"]["size"] == real["spec"]["size"] and scan["spec"]["pixels"] == real["spec"]["pixels"]
        assert scan["spec"]["line_rate"] == real["spec"]["line_rate"]
        assert set(scan["values"]) == set(realism.STATISTICS)
    assert "phase_up" not in data["checked"] and "phase_up" in data["unchecked"]
    lo, hi = data["real_range"]["pixel_noise"]
    assert lo == min(r["values"]["pixel_noise"] for r in data["real"]) and 0.05 < lo < hi < 0.3
    assert (tmp_path / "realism.png").read_bytes()[:8] == PNG
    row = next(line for line in out.out.splitlines() if line.startswith("pixel_noise"))
    assert row.endswith("OUTSIDE") and url in out.out
    assert "realism" in out.err and "8/8" not in out.err and "4/4" in out.err, "a progress bar over the scans"


def test_statistics_can_be_chosen(tmp_path, capsys):
    assert run(tmp_path, str(REAL / "PTO_Funakubo0003.h5"), "--backend", "twin://?seed=2&noise=0",
               "--statistics", "pixel_noise,phase_up", "--center", "2e-6", "3e-6") == 1
    data = json.loads((tmp_path / "realism.json").read_text())
    assert data["checked"] == ["pixel_noise", "phase_up"] and data["backends"][0]["center"] == [2e-6, 3e-6]
    assert data["backends"][0]["outside"][0] == "pixel_noise"


def test_bad_input_exits_2_with_a_message(tmp_path, capsys):
    missing = REAL / "PTO_Funakubo0009.h5"
    assert run(tmp_path, str(missing), "--backend", "twin://?seed=1") == 2
    assert "PTO_Funakubo0009.h5" in capsys.readouterr().err
    assert run(tmp_path, str(REAL), "--backend", "twin://?sede=1") == 2
    assert "unknown option(s) 'sede'" in capsys.readouterr().err
    assert run(tmp_path, str(REAL), "--backend", "twin://?seed=1", "--statistics", "noise") == 2
    assert "statistic 'noise' is not in the panel" in capsys.readouterr().err
    assert not (tmp_path / "realism.json").exists(), "nothing written on bad input"


def test_ranges_are_exact_and_nan_is_outside():
    spec = control.ScanSpec(center=(0.5e-6, 0.5e-6), size=(1e-6, 1e-6), pixels=(4, 4))
    scan = control.ScanResult(spec, {}, *spec.positions(), np.zeros(4))
    reals = [(Path("a.h5"), scan), (Path("b.h5"), scan)]
    real_values = [dict.fromkeys(realism.STATISTICS, 1.0), dict.fromkeys(realism.STATISTICS, 2.0)]
    real_values[0]["wall_width"] = real_values[1]["wall_width"] = math.nan  # no real scan defines it
    inside = realism.Backend("inside://", (0.0, 0.0), [scan, scan], [dict.fromkeys(realism.STATISTICS, 1.0),
                                                                     dict.fromkeys(realism.STATISTICS, 2.0)])
    edge = realism.Backend("edge://", (0.0, 0.0), [scan, scan], [dict.fromkeys(realism.STATISTICS, 1.5)] * 2)
    edge.values = [dict(v) for v in edge.values]
    edge.values[0]["line_cv"] = 2.0 + 1e-12
    edge.values[1]["pixel_noise"] = math.nan
    data = realism.report(reals, real_values, [inside, edge], realism.DEFAULT_STATISTICS)
    assert data["outside"] == {"inside://": [], "edge://": ["pixel_noise", "line_cv"]}
    assert data["undefined_by_real_scans"] == ["wall_width"] and "wall_width" not in data["checked"]
    assert data["exit_status"] == 1
    assert json.loads(json.dumps(data, allow_nan=False)) == data, "plain JSON: NaN written as null"
    text = realism.table(data)
    assert "(phase_up)" in text and "edge://: 2 of 13 checked statistics outside" in text


def test_exit_0_when_every_checked_statistic_of_the_default_twin_is_inside(tmp_path, capsys):
    """The amplitude level, noise, texture correlation and phase states of the default twin lie
    inside the real range on every scan (tests/twin/test_realism.py holds the whole panel)."""
    chosen = "median_amplitude,pixel_noise,pixel_correlation,line_correlation,phase_separation,wall_contrast"
    code = run(tmp_path, str(REAL), "--backend", "twin://?seed=1&day=0", "--statistics", chosen)
    data = json.loads((tmp_path / "realism.json").read_text())
    assert code == 0, f"outside the real range: {data['backends'][0]['outside']}"
    assert data["checked"] == chosen.split(",")
