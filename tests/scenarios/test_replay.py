"""``pfmtwin replay``: a recorded session re-issued against another instrument, and the gap report."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest

import control
from control import ScanResult, ScanSpec
from control.errors import LimitError, UrlError
from control.recording import Recorder, read_session
from scenarios import replay as replay_module
from scenarios.replay import ReplayError, compare_scans, correlation, replay, wall_error

from ..conftest import SMALL_TWIN, assert_scans_equal

URL = SMALL_TWIN.format(seed=3)
OPTIONS = URL.removeprefix("twin://?")
PNG = b"\x89PNG\r\n\x1a\n"
#: 32 x 32 pixels over 0.4 um of the 0.5 um film: 12.5 nm pixels, the wall of init=wall inside.
SPEC = ScanSpec(center=(2.5e-7, 2.5e-7), size=(4e-7, 4e-7), pixels=(32, 32), line_rate=10.0)
#: Index and verb of each command the script records.
SCRIPT = ["scan", "apply_pulse", "move_tip", "apply_pulse", "info", "apply_pulse", "scan"]


def run_script(scope) -> None:
    """Two scans around three pulses (one refused: 20 V > the 10 V limit), a move and an info."""
    scope.scan(SPEC)
    scope.apply_pulse(2.6e-7, 2.5e-7, 8.0, 5e-3)
    scope.move_tip(1e-7, 1e-7, speed=1e-6)
    with pytest.raises(LimitError):
        scope.apply_pulse(2e-7, 2e-7, 20.0, 1e-3)
    scope.info()
    scope.apply_pulse(2.2e-7, 3e-7, -8.0, 5e-3)
    scope.scan(SPEC)


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> Path:
    """The script recorded on the small twin film."""
    path = tmp_path_factory.mktemp("session") / "session.h5"
    with Recorder(control.connect(URL), path, metadata={"sample": "PTO-7", "note": "replay test"}) as scope:
        run_script(scope)
    assert [c.verb for c in read_session(path).commands] == SCRIPT
    return path


def report_on_disk(out: Path) -> dict:
    return json.loads((out / "replay.json").read_text())


def test_a_replay_on_the_same_instrument_has_no_gap(session, tmp_path):
    out = tmp_path / "same"
    report = replay(session, None, out, progress=False)  # None: the session's own backend_url
    totals = report["totals"]
    assert report == report_on_disk(out), "the returned report is the one written"
    assert totals["commands"] == totals["replayed"] == len(SCRIPT)
    assert totals["pulses"] == totals["pulses_equal"] == 2
    assert totals["scans"] == totals["scans_identical"] == 2
    assert totals["correlation_min"] == totals["correlation_mean"] == 1.0
    assert totals["wall_error_max_nm"] == totals["wall_error_mean_nm"] == 0.0
    assert totals["wall_error_undefined"] == 0, "both scans show the wall, so a zero wall error means something"
    assert totals["domain_mismatch_max"] == 0.0
    assert totals["time_difference_max_s"] == 0.0
    assert totals["first_divergence"] is None
    assert totals["original_backend_url"] == totals["replay_backend_url"] == URL
    assert report["setup_differences"] == []
    # the refused pulse is re-issued and refused the same way; it is no new failure
    refused = report["commands"][3]
    assert refused["original"]["error_type"] == refused["replay"]["error_type"] == "LimitError"
    assert refused["failed_same_way"] is True and not refused["diverges"]
    assert totals["original_failures"] == totals["failed_same_way"] == totals["replay_failures"] == 1
    assert totals["new_failures"] == []
    assert all(c["start_difference_s"] == c["end_difference_s"] == 0.0 for c in report["commands"])
    # the picture and the replay's own session
    assert (out / "worst_scan.png").read_bytes()[:8] == PNG
    assert totals["worst_scan"]["index"] in (0, 6) and totals["worst_scan_note"] is None
    original, again = read_session(session), read_session(out / "replay.h5")
    assert [c.verb for c in again.commands] == SCRIPT
    assert again.commands[3].error[0] == "LimitError"
    for got, want in zip(again.scans(), original.scans()):
        assert_scans_equal(got, want)
    assert again.pulses() == original.pulses()
    assert again.metadata["replay_of"] == str(session.resolve())
    assert again.metadata["sample"] == "PTO-7" and again.metadata["note"] == "replay test"


@pytest.mark.parametrize("change", ["&day=1", "seed"], ids=["other-day", "other-seed"])
def test_another_day_or_film_shows_a_gap_from_the_first_scan(session, tmp_path, capsys, change):
    against = URL + change if change.startswith("&") else SMALL_TWIN.format(seed=4)
    report = replay(session, against, tmp_path / "gap")
    totals = report["totals"]
    assert totals["replay_backend_url"] == against
    assert totals["scans_identical"] == 0
    assert 0 < totals["correlation_min"] < 0.99, "another day's instrument reads the film differently"
    assert totals["wall_error_max_nm"] > 0
    assert totals["first_divergence"] == {"index": 0, "verb": "scan", "reasons": ["scan"]}
    changed = {d["key"] for d in report["setup_differences"]}
    assert ("options.day" if change.startswith("&") else "options.seed") in changed
    info = report["commands"][4]
    assert {d["key"] for d in info["info_differences"]} == changed
    assert not info["diverges"], "a different info answer is reported but is not a divergence"
    assert (tmp_path / "gap" / "worst_scan.png").read_bytes()[:8] == PNG
    worst = report["commands"][totals["worst_scan"]["index"]]["scan"]
    assert worst["correlation"] == totals["correlation_min"], "the picture shows the worst-matching pair"
    err = capsys.readouterr().err
    assert "replay: 100%" in err and "7/7" in err, "a progress bar on stderr, one tick per command"


def test_a_command_the_replay_refuses_is_reported_and_the_replay_goes_on(session, tmp_path):
    # a 0.3 um film has a 0.3 um scanner range: the scans (to 0.45 um) are refused, the pulses are not
    out = tmp_path / "small"
    report = replay(session, URL.replace("field=5e-7", "field=3e-7"), out, progress=False)
    totals = report["totals"]
    assert totals["new_failures"] == [0, 6]
    assert [report["commands"][i]["replay"]["error_type"] for i in (0, 6)] == ["LimitError", "LimitError"]
    assert report["commands"][5]["replay"]["ok"], "the replay went on after the refused scan"
    assert totals["first_divergence"]["index"] == 0 and "outcome" in totals["first_divergence"]["reasons"]
    assert totals["scans"] == 2 and totals["scans_compared"] == 0 and totals["correlation_min"] is None
    assert totals["worst_scan"] is None and "no scan" in totals["worst_scan_note"]
    assert not (out / "worst_scan.png").exists()
    assert {"key": "hardware.scan_range", "original": 5e-7, "replay": 3e-7} in report["setup_differences"]
    assert [c.error[0] if c.error else None for c in read_session(out / "replay.h5").commands] == [
        "LimitError", None, None, "LimitError", None, None, "LimitError"]


def test_a_session_without_scans_has_no_picture(tmp_path):
    path = tmp_path / "pulses.h5"
    with Recorder(control.connect(URL), path) as scope:
        scope.apply_pulse(2e-7, 2e-7, 6.0, 1e-3)
        scope.apply_pulse(3e-7, 2e-7, -6.0, 2e-3)
    report = replay(path, URL, tmp_path / "out", progress=False, record=False)
    totals = report["totals"]
    assert totals["pulses_equal"] == 2 and totals["first_divergence"] is None
    assert totals["scans"] == 0 and totals["correlation_mean"] is None
    assert totals["worst_scan"] is None and totals["worst_scan_note"] == "the session has no scan"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["replay.json"], "record=False: no replay.h5"


def test_a_session_recorded_through_the_emulator_replays_on_the_twin_with_no_gap(emulators, tmp_path):
    emulator = emulators(OPTIONS, speed=None)
    path = tmp_path / "emulated.h5"
    with Recorder(control.connect(emulator.url), path) as scope:
        run_script(scope)
    report = replay(path, "twin://?" + OPTIONS, tmp_path / "out", progress=False)
    totals = report["totals"]
    assert totals["original_backend_url"].startswith("socket://127.0.0.1:")
    assert report["original_backend"] == "emulator" and report["replay_backend"] == "twin"
    assert totals["pulses_equal"] == 2 and totals["scans_identical"] == 2
    assert totals["correlation_min"] == 1.0 and totals["wall_error_max_nm"] == 0.0
    assert totals["time_difference_max_s"] == 0.0
    assert totals["first_divergence"] is None
    # the emulator adds its own option (speed); the film and the hardware are the same
    assert {d["key"] for d in report["setup_differences"]} <= {"options.speed"}


def test_bad_input_is_refused_by_name_and_nothing_is_written(session, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ReplayError, match="no session file at .*missing.h5.*check the path") as missing:
        replay(tmp_path / "missing.h5", URL, out)
    assert isinstance(missing.value, ValueError)
    text = tmp_path / "notes.h5"
    text.write_text("not HDF5")
    with pytest.raises(ReplayError, match="notes.h5"):
        replay(text, URL, out)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(ReplayError, match="not a pfmtwin session"):
        replay(foreign, URL, out)
    with pytest.raises(UrlError):
        replay(session, "twin://?sede=3", out)
    assert not out.exists(), "a refused replay leaves no folder behind"
    afile = tmp_path / "a-file"
    afile.write_text("")
    with pytest.raises(ReplayError, match="is a file"):
        replay(session, URL, afile)
    # an output folder that already holds a replay is never overwritten silently
    replay(session, URL, out, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ReplayError, match=r"already holds a replay .*replay\.json.*overwrite=True"):
        replay(session, URL + "&day=1", out, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before, "the refused replay changed nothing"
    replay(session, URL + "&day=1", out, progress=False, overwrite=True)
    assert report_on_disk(out)["totals"]["replay_backend_url"] == URL + "&day=1"
    assert read_session(out / "replay.h5").metadata["backend_url"] == URL + "&day=1"


def test_the_command_line_prints_the_totals(session, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    replay_module.add_arguments(parser)
    args = parser.parse_args([str(session), "--out", str(tmp_path / "cli")])
    assert args.against is None and not args.overwrite
    assert replay_module.command(args) == 0
    totals = json.loads(capsys.readouterr().out)
    assert totals["first_divergence"] is None and totals["replay_backend_url"] == URL
    with pytest.raises(SystemExit):
        parser.parse_args([str(session)])  # --out is required


# -- the measures themselves, on images whose answer is known ---------------------------------


def step_scan(column: int, pixels: int = 32, pitch: float = 10e-9) -> ScanResult:
    """A raster scan whose wall lies between columns ``column - 1`` and ``column`` (0 deg left, 180 right)."""
    spec = ScanSpec(center=(pixels * pitch / 2 + 1e-7, 2e-7), size=(pixels * pitch, pixels * pitch),
                    pixels=(pixels, pixels))
    x, y = spec.positions()
    phase = np.where(np.arange(pixels)[None, :] < column, 0.0, 180.0) * np.ones(spec.shape)
    channels = {"height": np.zeros(spec.shape), "amplitude": np.full(spec.shape, 1e-10), "phase": phase}
    return ScanResult(spec=spec, channels=channels, x=x, y=y, line_times=np.arange(pixels) / spec.line_rate)


def test_the_wall_error_is_zero_for_one_wall_one_pitch_for_a_moved_wall_and_nan_without_a_wall():
    wall, moved, single = step_scan(16), step_scan(17), step_scan(32)
    assert wall_error(wall, wall) == 0.0
    assert wall_error(wall, moved) == pytest.approx(10e-9, rel=1e-9)
    assert wall_error(wall, step_scan(19)) == pytest.approx(30e-9, rel=1e-9)
    assert math.isnan(wall_error(wall, single)) and math.isnan(wall_error(single, wall))
    gap = compare_scans(wall, moved)
    assert not gap["identical"] and gap["domain_mismatch"] == pytest.approx(1 / 32)
    assert gap["wall_error_nm"] == pytest.approx(10.0)
    assert correlation(wall, wall) == 1.0 and correlation(wall, moved) < 1.0
    assert math.isnan(correlation(wall, single)), "a constant image has no correlation"
