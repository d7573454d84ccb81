"""The pfmtwin command line, run as a user runs it: a real subprocess, real files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from control.recording import read_session

from ..conftest import SMALL_TWIN

ROOT = Path(__file__).resolve().parents[2]


def pfmtwin(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scenarios.cli", *args], capture_output=True, text=True, check=check, cwd=ROOT,
        timeout=300,
    )


def test_info_prints_the_contract_as_json():
    out = json.loads(pfmtwin("info", SMALL_TWIN.format(seed=1)).stdout)
    assert out["backend"] == "twin"
    assert out["hardware"]["clock"] == 100e6
    assert out["options"]["grid"] == 64


def test_bad_url_is_a_clear_error_and_exit_code_2():
    run = pfmtwin("info", "twin://?sede=1", check=False)
    assert run.returncode == 2
    assert "unknown option(s) 'sede'" in run.stderr and "accepted: seed=" in run.stderr


def test_scan_records_a_session_and_a_picture(tmp_path):
    out, png = tmp_path / "scan.h5", tmp_path / "scan.png"
    args = ["scan", SMALL_TWIN.format(seed=1), "--out", str(out), "--png", str(png),
            "--center", "2.5e-7", "2.5e-7", "--size", "4e-7", "4e-7", "--pixels", "32", "32", "--sample", "PTO-1"]
    summary = json.loads(pfmtwin(*args).stdout)
    assert summary["shape"] == [32, 32]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    session = read_session(out)
    assert session.metadata["sample"] == "PTO-1"
    assert [c.verb for c in session.commands].count("scan") == 1
    assert session.scans()[0].amplitude.shape == (32, 32)
    run = pfmtwin(*args, check=False)
    assert run.returncode == 2 and "exists" in run.stderr, "an existing session file is never overwritten"
    assert "--overwrite" in run.stderr, "the error names the fix"
    assert "scan: 100%" in pfmtwin(*args, "--overwrite").stderr, "a progress bar over the lines"
    assert read_session(out).scans()[0].amplitude.shape == (32, 32)


def test_a_refused_scan_creates_no_file(tmp_path):
    out = tmp_path / "refused.h5"
    run = pfmtwin("scan", SMALL_TWIN.format(seed=1), "--out", str(out), "--line-rate", "500", check=False)
    assert run.returncode == 2 and "line_rate=500.0 Hz" in run.stderr
    assert not out.exists(), "nothing is created before the command is accepted"
    summary = json.loads(pfmtwin("scan", SMALL_TWIN.format(seed=1), "--out", str(out), "--pixels", "16", "16",
                                 "--center", "2.5e-7", "2.5e-7", "--size", "2e-7", "2e-7").stdout)
    assert summary["shape"] == [16, 16], "the corrected retry works"


def test_help_texts_show_the_defaults():
    text = " ".join(pfmtwin("scan", "--help").stdout.split())
    for default in ("(default: 1e-06 1e-06)", "(default: 256 256)", "(default: 1.0)", "(default: raster)"):
        assert default in text, default
    text = " ".join(pfmtwin("emulate", "--help").stdout.split())
    assert "(default: 1.0)" in text and "default: socket://127.0.0.1:7001" in text


def test_demo_runs_the_wall_pulse_experiment(tmp_path):
    run = pfmtwin("demo", "--url", "twin://?seed=7&grid=128&field=1e-6&init=wall&scanner=closed", "--out", str(tmp_path),
                  "--pulses", "6", "--rescan-every", "3")
    summary = json.loads(run.stdout)
    assert summary["pulses"] == 6
    assert summary["fraction_of_pixels_switched"] > 0, "pulses at the wall must move it"
    session = read_session(tmp_path / "session.h5")
    verbs = [c.verb for c in session.commands]
    assert verbs.count("apply_pulse") == 6 and verbs.count("scan") == 3
    assert (tmp_path / "before_after.png").stat().st_size > 10_000
    with h5py.File(tmp_path / "session.h5", "r") as f:
        assert f.attrs["material"] == "PbTiO3"


def test_bench_prints_one_json_object():
    out = json.loads(pfmtwin("bench", "twin", "--url", SMALL_TWIN.format(seed=1), "--repeat", "2").stdout)
    assert out["benchmark"] == "twin"
    assert out["scan_256x256_s"] > 0 and out["pulse_0.25ms_with_relaxation_s"] > 0
    assert out["real_instrument_scan_s"] == 256.0 and "scaling" not in out
    refused = pfmtwin("bench", "emulator", "--scaling", check=False)
    assert refused.returncode == 2 and "--scaling applies to `pfmtwin bench twin`" in refused.stderr


def test_bench_be_compares_the_fit_with_the_acquisition():
    out = json.loads(pfmtwin("bench", "be", "--url", "twin://?seed=1&grid=128&field=1e-6", "--repeat", "1").stdout)
    assert out["benchmark"] == "be" and out["spectra"] == 3 * 3 * 64 * 2
    assert out["fit_noisy_spectra_per_s"] > 0 and out["instrument_spectra_per_s"] == 250


def test_bench_twin_scaling_builds_each_grid_from_the_url():
    from scenarios.bench import SCALING_GRIDS, bench_twin

    grids = (64, 128)
    assert "scaling" not in bench_twin(SMALL_TWIN.format(seed=1), repeat=2)
    rows = bench_twin(SMALL_TWIN.format(seed=1), repeat=2, scaling=True, grids=grids)["scaling"]
    assert [r["grid"] for r in rows] == list(grids) and SCALING_GRIDS == (256, 512, 1024, 2048)
    assert all(r["open_s"] > 0 and r["scan_256x256_s"] > 0 and r["pulse_0.25ms_with_relaxation_s"] > 0 for r in rows)
    assert rows[1]["film_m"] == 2 * rows[0]["film_m"] == 1e-6


def test_the_layering_contract_holds():
    """import-linter checks DESIGN.md's layering (contracts in pyproject.toml)."""
    exe = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run([str(exe)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"Contracts: [1-9]\d* kept, 0 broken\.", run.stdout)


@pytest.mark.slow
def test_bench_emulator_prints_round_trips_and_lag():
    run = pfmtwin("bench", "emulator", "--url", SMALL_TWIN.format(seed=1), "--repeat", "1")
    out = json.loads(run.stdout)
    for key in ("round_trip_socket", "round_trip_pty"):
        assert 0 < out[key]["median_s"] <= out[key]["p99_s"]
    assert out["realtime_lag_per_line_s"]["lines"] == 10
    assert out["realtime_lag_per_line_s"]["median"] > -0.05, "a line cannot arrive before it is acquired"
