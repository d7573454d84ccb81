"""``pfmtwin realism``: the twin's statistics panel against the real PbTiO3 scans in tests/data/pfm-real."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import control
from scenarios import realism
from scenarios.cli import main

REAL = Path(__file__).resolve().parents[1] / "data" / "pfm-real"
PNG = b"\x89PNG\r\n\x1a\n"


def run(tmp_path: Path, *args: str) -> int:
    return main(["realism", *args, "--out", str(tmp_path)])


@pytest.mark.slow
def test_a_noise_free_twin_is_flagged(tmp_path, capsys):
    url = "twin://?seed=1&noise=0"
    assert run(tmp_path, str(REAL), "--backend", url) == 1
    out = capsys.readouterr()
    data = json.loads((tmp_path / "realism.json").read_text())
    assert "pixel_noise" in data["flagged"][url], "without noise no image has the real scans' pixel noise"
    assert data["exit_status"] == 1 and data["rule"] == "paired" and data["alpha"] == 0.1
    (backend,) = data["backends"]
    test = backend["paired"]["tests"]["pixel_noise"]
    assert test["pairs"] == 4 and test["p"] < backend["paired"]["level"] == 0.1 / len(data["checked"])
    assert all("pixel_noise" in scan["outside_range"] for scan in backend["scans"])
    assert [Path(r["file"]).name for r in data["real"]] == [f"PTO_Funakubo000{i}.h5" for i in range(1, 5)]
    (backend,) = data["backends"]
    assert len(backend["scans"]) == 4 and backend["center"] == [2.625e-6, 2.625e-6], "default: the scanner's middle"
    for real, scan in zip(data["real"], backend["scans"]):
        assert scan["spec"]["size"] == real["spec"]["size"] and scan["spec"]["pixels"] == real["spec"]["pixels"]
        assert scan["spec"]["line_rate"] == real["spec"]["line_rate"]
        assert set(scan["values"]) == set(realism.STATISTICS)
    assert "phase_up" not in data["checked"] and "phase_up" in data["unchecked"]
    lo, hi = data["real_range"]["pixel_noise"]
    assert lo == min(r["values"]["pixel_noise"] for r in data["real"]) and 0.05 < lo < hi < 0.3
    assert (tmp_path / "realism.png").read_bytes()[:8] == PNG
    row = next(line for line in out.out.splitlines() if line.startswith("pixel_noise"))
    assert row.endswith("[4/4 out of range] t=-7.0 FLAGGED") and url in out.out
    assert "each held against the range of the others: 50% of their values inside" in out.out
    assert "realism" in out.err and "8/8" not in out.err and "4/4" in out.err, "a progress bar over the scans"


def test_statistics_and_the_range_rule_can_be_chosen(tmp_path, capsys):
    assert run(tmp_path, str(REAL / "PTO_Funakubo0003.h5"), "--backend", "twin://?seed=2&noise=0",
               "--statistics", "pixel_noise,phase_up", "--center", "2e-6", "3e-6", "--rule", "range") == 1
    data = json.loads((tmp_path / "realism.json").read_text())
    assert data["checked"] == ["pixel_noise", "phase_up"] and data["backends"][0]["center"] == [2e-6, 3e-6]
    assert data["rule"] == "range" and data["backends"][0]["flagged"][0] == "pixel_noise"
    assert data["real_leave_one_out"]["inside_fraction"] is None, "one real scan has no others to be held against"


def test_bad_input_exits_2_with_a_message(tmp_path, capsys):
    missing = REAL / "PTO_Funakubo0009.h5"
    assert run(tmp_path, str(missing), "--backend", "twin://?seed=1") == 2
    assert "PTO_Funakubo0009.h5" in capsys.readouterr().err
    assert run(tmp_path, str(REAL), "--backend", "twin://?sede=1") == 2
    assert "unknown option(s) 'sede'" in capsys.readouterr().err
    assert run(tmp_path, str(REAL), "--backend", "twin://?seed=1", "--statistics", "noise") == 2
    assert "statistic 'noise' is not in the panel" in capsys.readouterr().err
    assert run(tmp_path, str(REAL / "PTO_Funakubo0003.h5"), "--backend", "twin://?seed=1") == 2
    assert "the paired rule needs at least 3 real scans, got 1; give more real scans or use --rule range" \
        in capsys.readouterr().err
    assert run(tmp_path, str(REAL), "--backend", "twin://?seed=1", "--rule", "median") == 2
    assert "--rule 'median' is not a rule; use one of paired, range" in capsys.readouterr().err
    assert run(tmp_path, str(REAL), "--backend", "twin://?seed=1", "--alpha", "5") == 2
    assert "--alpha 5.0 must lie in (0, 1)" in capsys.readouterr().err
    assert not (tmp_path / "realism.json").exists(), "nothing written on bad input"


def test_range_rule_ranges_are_exact_and_nan_is_outside():
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
    data = realism.report(reals, real_values, [inside, edge], realism.DEFAULT_STATISTICS, rule="range")
    assert data["flagged"] == {"inside://": [], "edge://": ["pixel_noise", "line_cv"]}
    assert [b["outside_range"] for b in data["backends"]] == [[], ["pixel_noise", "line_cv"]]
    assert data["undefined_by_real_scans"] == ["wall_width"] and "wall_width" not in data["checked"]
    assert data["exit_status"] == 1
    assert json.loads(json.dumps(data, allow_nan=False)) == data, "plain JSON: NaN written as null"
    text = realism.table(data)
    assert "(phase_up)" in text and "edge://: 2 of 13 checked statistics flagged" in text
    assert "rule range: FLAGGED when any value lies outside the real min-max range" in text


def test_the_paired_test_flags_a_consistent_difference_not_scatter():
    real = [1.0, 2.0, 4.0, 3.0]
    shifted = [x + 0.5 + 0.01 * i for i, x in enumerate(real)]  # consistently larger
    scattered = [1.5, 1.6, 4.4, 2.8]  # off by as much, both ways
    assert realism.paired_test("psd_slope", shifted, real)["p"] < 1e-4
    assert realism.paired_test("psd_slope", scattered, real)["p"] > 0.5
    # Scale quantities compare as ratios: a third of each real value is far off whatever the level,
    test = realism.paired_test("pixel_noise", [x / 3 * (1 + 0.02 * i) for i, x in enumerate(real)], real)
    assert test["mean_difference"] == pytest.approx(math.log(1 / 3), abs=0.05) and test["p"] < 1e-4
    # ... correlations as they are: stripes (the twin before issue 10) are far off.
    test = realism.paired_test("line_correlation", [0.3, 0.35, 0.32, 0.38], [0.97, 0.92, 0.99, 0.95])
    assert test["mean_difference"] == pytest.approx(-0.62) and test["p"] < 1e-3
    assert realism.paired_test("psd_slope", real, real) == {"pairs": 4, "undefined": 0, "mean_difference": 0.0,
                                                            "t": 0.0, "p": 1.0}
    # No domain at all (0 on a log scale) is as far off as can be; NaN is undefined; NaN real scans do not pair.
    assert realism.paired_test("minority_fraction", [0.0, 0.1, 0.1, 0.1], [0.05, 0.1, 0.12, 0.07])["p"] == 0.0
    test = realism.paired_test("wall_width", [math.nan, 2e-8, 3e-8, 4e-8], [3e-8, 2e-8, math.nan, 4e-8])
    assert test["pairs"] == 3 and test["undefined"] == 1 and test["p"] is None


def test_leave_one_out_holds_each_real_scan_against_the_others():
    values = [{"a": 1.0, "b": 5.0}, {"a": 2.0, "b": 6.0}, {"a": 3.0, "b": 7.0}, {"a": 4.0, "b": math.nan}]
    loo = realism.leave_one_out(values, ("a", "b"))
    assert loo["scans"] == [["a", "b"], [], ["b"], ["a"]]
    assert loo["inside_fraction"] == pytest.approx(3 / 7) and loo["expected"] == pytest.approx(3 / 5)


@pytest.mark.slow
def test_exit_0_for_the_default_twin(tmp_path, capsys):
    """No statistic of the default twin is flagged (tests/twin/test_realism.py holds the whole
    panel over several samples and days)."""
    code = run(tmp_path, str(REAL), "--backend", "twin://?seed=1&day=0")
    data = json.loads((tmp_path / "realism.json").read_text())
    assert code == 0, f"flagged: {data['backends'][0]['flagged']}"
    assert data["checked"] == list(realism.DEFAULT_STATISTICS)
