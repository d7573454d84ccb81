"""``pfmtwin probe``: hostile testing of a served twin, small scale, as a user runs it."""

from __future__ import annotations

import json

import pytest

from .test_cli import pfmtwin


@pytest.mark.slow
def test_a_small_probe_finds_nothing_wrong_doubled_lost_or_hung():
    run = pfmtwin("probe", "--scale", "0.001", "--seed", "1", check=False)
    report = json.loads(run.stdout)
    assert run.returncode == 0, report["totals"]
    assert report["totals"] == {"wrong": 0, "double": 0, "lost": 0, "hangs": 0, "crashes": 0, "unreadable": 0,
                                "storm_executed": 0}
    assert [m["mix"] for m in report["faults"]] == ["1%", "5%", "10%"]
    for mix in report["faults"]:
        assert mix["completed"] == mix["commands"] == 10
        assert mix["executed"] >= 1, "the emulator ran commands"
    assert report["fuzz"]["random_bytes"] == 50 and report["fuzz"]["health_checks"] >= 3
    assert report["storm"]["cycles"] == 8
    assert report["kill9"]["tries"] == 2 and report["kill9"]["announced"] >= 2
    assert report["kill9"]["recorded"] >= report["kill9"]["announced"]
    assert "probe" in run.stderr, "a progress bar"


def test_probe_refuses_a_bad_scale():
    run = pfmtwin("probe", "--scale", "0", check=False)
    assert run.returncode == 2 and "--scale 0.0 must lie in (0, 10]" in run.stderr
