"""Scenario files, ``pfmtwin run`` and ``pfmtwin stress``: the shipped examples, bad files, crashes
and hangs in a suite, through the real console script and real processes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from control.recording import read_session
from scenarios.cli import main
from scenarios.scenario import ScenarioError, find_scenario, load_scenario, load_suite

from ..conftest import SMALL_TWIN, _started_by_tests

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "scenarios" / "examples").glob("*.toml"))


def in_process(capsys, *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_the_examples_cover_the_backends_a_scenario_can_name():
    kinds = {(s.backend.serve or s.backend.url.split("://")[0]) for s in map(load_scenario, EXAMPLES)}
    assert {"twin", "emulate", "cosim"} <= kinds, kinds
    assert any(load_scenario(p).limits for p in EXAMPLES), "one example tightens the limits"


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.slow) if p.stem == "cosim" else p
                                  for p in EXAMPLES], ids=lambda p: p.stem)
def test_every_shipped_scenario_runs_and_records_one_session(path, tmp_path, capsys):
    scenario = load_scenario(path)
    code, out, err = in_process(capsys, "run", str(path), "--out", str(tmp_path), "--quiet")
    assert code == 0, err
    summary = json.loads(out)
    session = read_session(summary["session"])
    assert not session.incomplete
    for key, value in scenario.metadata.items():
        assert session.metadata[key] == value, key
    assert session.metadata["scenario"] == scenario.name and session.metadata["scenario_seed"] == scenario.seed
    pulses = session.pulses()
    assert len(pulses) == summary["pulses"] and len(session.scans()) == summary["scans"] >= 2
    assert summary["pulses"] + len(summary["refused"]) == scenario.plan.pulses, "every planned pulse is accounted for"
    low, high = scenario.plan.bias
    dac = 1e-3  # V: the emitted amplitude is the DAC's code, within a fraction of a mV of the request
    assert all(low - dac <= abs(p.amplitude) <= high + dac for p in pulses)
    if "bias_max" in scenario.limits:
        assert summary["refused"] and pulses, "the example's plan crosses its limit: some refused, some sent"
        assert all(abs(p.amplitude) <= scenario.limits["bias_max"] for p in pulses), "nothing above the limit sent"
        assert all(abs(r["amplitude"]) > scenario.limits["bias_max"] or r["width"] > scenario.limits.get(
            "pulse_width_max", np.inf) for r in summary["refused"])
    assert Path(summary["picture"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "summary.json").read_text())["pulses"] == summary["pulses"]
    assert not _started_by_tests(), "a served emulator or simulator outlived its run"


def test_same_scenario_same_seed_same_session(tmp_path, capsys):
    path = ROOT / "scenarios" / "examples" / "wall-pulse.toml"
    sessions = []
    for run in ("a", "b"):
        code, out, err = in_process(capsys, "run", str(path), "--out", str(tmp_path / run), "--quiet")
        assert code == 0, err
        sessions.append(read_session(json.loads(out)["session"]))
    a, b = sessions
    assert a.pulses() == b.pulses()
    for x, y in zip(a.scans(), b.scans(), strict=True):
        assert x.amplitude.tobytes() == y.amplitude.tobytes() and x.phase.tobytes() == y.phase.tobytes()
    code, _, err = in_process(capsys, "run", str(path), "--out", str(tmp_path / "a"), "--quiet")
    assert code == 2 and "already exists" in err and "--overwrite" in err


BASE = f"""
seed = 1
[backend]
url = "{SMALL_TWIN.format(seed=3)}"
[plan]
kind = "wall-pulse"
pulses = 1
[plan.scan]
size = 4e-7
pixels = 16
"""


@pytest.mark.parametrize(("text", "match"), [
    (BASE.replace("seed = 1", "seed = 1\ncolour = 'red'"), r"bad\.toml, line 3: colour: unknown key; accepted in "
                                                          r"\[top level\]: name, description, seed"),
    (BASE.replace("pulses = 1", "pulses = 'six'"), r"bad\.toml, line 7: plan\.pulses: 'six' must be an integer"),
    (BASE.replace("pixels = 16", "pixels = 16\nsize_x = 1"), r"line 11: plan\.scan\.size_x: unknown key"),
    (BASE.replace('kind = "wall-pulse"', 'kind = "raster"'), r"line 6: plan\.kind: 'raster' is not one of "
                                                           r"'wall-pulse', 'policy'"),
    (BASE.replace("[backend]", "[backend]\nserve = 'emulate'"), r"line 5: backend\.url: give either url .* not both"),
    (BASE + "[limits]\nbias = 5.0\n", r"line 12: limits\.bias: unknown safety limit\(s\) 'bias'"),
    (BASE.replace("size = 4e-7", "size = -4e-7"), r"line 9: plan\.scan\.size: -4e-07 m must be > 0"),
    (BASE.replace("[plan]", "[plan]\nbias = [9.0, 4.0]"), r"plan\.bias: \[9\.0, 4\.0\]: low must not exceed high"),
    (BASE.split("[plan]")[0], r"bad\.toml: plan: is required: a \[plan\] table with kind = one of wall-pulse, policy"),
    (BASE.replace("seed = 1", "seed = = 1"), r"bad\.toml: not valid TOML: .*line 2"),
    (BASE.split("[plan.scan]")[0].replace('kind = "wall-pulse"\npulses = 1', 'kind = "policy"\npolicy = "missing.pt"'),
     r"plan\.policy: '.*missing\.pt' does not exist; give a policy file from `pfmtwin agent train`"),
])
def test_a_bad_scenario_file_names_the_file_the_line_and_the_key(tmp_path, capsys, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=match):
        load_scenario(path)
    code, _, err = in_process(capsys, "run", str(path), "--out", str(tmp_path / "out"))
    assert code == 2 and "bad.toml" in err
    assert not (tmp_path / "out").exists(), "a refused scenario writes nothing"


def test_a_matrix_expands_into_named_variants_and_run_picks_one(tmp_path, capsys):
    suite = load_suite(ROOT / "scenarios" / "suites" / "stress.toml")
    names = [s.name for s in suite]
    assert len(names) >= 12 and len(set(names)) == len(names)
    tight = find_scenario(ROOT / "scenarios" / "suites" / "stress.toml", "tight-limits")
    assert tight.limits == {"bias_max": 5.0, "pulse_width_max": 1e-3} and tight.variant == "tight-limits"
    faults = find_scenario(ROOT / "scenarios" / "suites" / "stress.toml", "link-faults")
    assert faults.backend.serve == "emulate" and "drop=" in faults.backend.faults and not faults.backend.url
    with pytest.raises(ScenarioError, match=r"a matrix of 12 scenarios .* pick one with --variant NAME"):
        find_scenario(ROOT / "scenarios" / "suites" / "stress.toml")
    with pytest.raises(ScenarioError, match=r"no variant named 'nope'; accepted: baseline, noise-x3"):
        find_scenario(ROOT / "scenarios" / "suites" / "stress.toml", "nope")


def test_a_policy_plan_runs_the_agent_and_records_its_session(tmp_path, capsys, wall_policy):
    path = tmp_path / "agent.toml"
    path.write_text(f"""
seed = 2
[metadata]
sample = "PTO-twin-1"
[backend]
url = "{SMALL_TWIN.format(seed=1)}"
[plan]
kind = "policy"
policy = "{wall_policy}"
episodes = 2
env = {{ max_steps = 3 }}
""")
    code, out, err = in_process(capsys, "run", str(path), "--out", str(tmp_path / "out"), "--quiet")
    assert code == 0, err
    summary = json.loads(out)
    assert len(summary["episodes"]) == 2 and all(1 <= e["steps"] <= 3 for e in summary["episodes"])
    session = read_session(summary["session"])
    assert len(session.pulses()) == summary["pulses"] == sum(e["steps"] for e in summary["episodes"])
    assert session.metadata["sample"] == "PTO-twin-1" and len(session.scans()) == summary["scans"] > summary["pulses"]


@pytest.mark.slow
def test_stress_reports_crashes_and_hangs_and_the_other_runs_go_on(tmp_path, capsys):
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "a-good.toml").write_text(BASE)
    (suite / "b-crash.toml").write_text(BASE.replace(SMALL_TWIN.format(seed=3), "socket://127.0.0.1:1"))
    # A run that cannot end within its 3 s: the most pulses a plan takes, about 2 minutes of the small twin.
    (suite / "c-hang.toml").write_text(BASE.replace("pulses = 1", "pulses = 100000") + "[run]\ntimeout = 3\n")
    code, out, err = in_process(capsys, "stress", str(suite), "--workers", "2", "--out", str(tmp_path / "out"))
    assert code == 1, err
    report = json.loads((tmp_path / "out" / "stress.json").read_text())
    status = {r["name"]: r["status"] for r in report["runs"]}
    assert status == {"a-good": "ok", "b-crash": "failed", "c-hang": "timeout"}, report
    crash = next(r for r in report["runs"] if r["name"] == "b-crash")
    assert "127.0.0.1:1" in crash["error"] and crash["returncode"] == 2
    assert read_session(tmp_path / "out" / "a-good" / "session.h5").pulses(), "the good run recorded its session"
    assert "a-good" in out and "timeout" in out and "no result after 3 s" in out
    left = _started_by_tests()  # the stdlib's resource tracker lives as long as this process: not counted
    assert not left, f"a run, its emulator or a Dask worker outlived the stress run: {left}"
