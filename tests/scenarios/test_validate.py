"""``pfmtwin validate``: a trained policy and the baselines on held-out films, one HTML report that
a browser opens cleanly, a JSON summary, and refusals that run nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib import image as mimage

from scenarios.cli import main
from scenarios.scenario import ScenarioError
from scenarios.validate import ValidationError, trained_on, validate

from ..conftest import SMALL_TWIN
from .test_report import _need_browser, screenshot

SUITE = """
description = "held-out films of the small twin"
[metadata]
project = "validation test"
[backend]
url = "{url}"
[plan]
kind = "wall-pulse"
[[variant]]
name = "films-100"
[[variant]]
name = "films-200-tight"
backend = {{ url = "{other}" }}
limits = {{ bias_max = 6.0 }}
"""


def test_validation_runs_every_agent_on_held_out_films_and_writes_a_clean_report(tmp_path, wall_policy, capsys):
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE.format(url=SMALL_TWIN.format(seed=100), other=SMALL_TWIN.format(seed=200)))
    out = tmp_path / "report" / "validation.html"
    code = main(["validate", "--policy", str(wall_policy), "--suite", str(suite), "--episodes", "2",
                 "--max-steps", "2", "--out", str(out)])
    printed, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(printed)["report"] == str(out)
    summary = json.loads(out.with_suffix(".json").read_text())
    assert [s["name"] for s in summary["scenarios"]] == ["films-100", "films-200-tight"]
    assert summary["held_out"]["trained_on"] == {"samples": [1], "days": [0]}
    assert summary["held_out"]["evaluated_on"]["samples"] == [100, 101, 200, 201]
    assert summary["held_out"]["held_out_samples"] == [100, 101, 200, 201]
    for scenario in summary["scenarios"]:
        assert set(scenario["agents"]) == {"policy", "random", "heuristic"}
        for agent, numbers in scenario["agents"].items():
            assert numbers["n"] == 2 and numbers["errors"] == [] and 2 <= numbers["steps"] <= 4, (agent, numbers)
            assert all(np.isfinite(numbers["returns"]))
        policy = scenario["agents"]["policy"]["returns"]
        assert policy[0] != policy[1], "a deterministic policy meets two different films"
    tight = summary["scenarios"][1]["agents"]
    assert all(tight[a]["refused"] == 0 for a in tight), "the environment keeps every pulse inside the limits"
    # the page opens in a real browser with nothing failing and nothing fetched from outside
    _need_browser()
    seen = screenshot(out, tmp_path / "shot.png", full_page=False)
    assert not seen["page_errors"] and not seen["failed_requests"]
    assert not [m for m in seen["console"] if m[0] in ("error", "warning")], seen["console"]
    assert all(url.startswith(("file:", "data:")) for url in seen["requests"]), seen["requests"]
    pixels = mimage.imread(tmp_path / "shot.png")[..., :3].reshape(-1, 3)
    assert len(np.unique(np.round(pixels * 255), axis=0)) > 50, "a blank screenshot"
    html = out.read_text()
    assert "films-200-tight" in html and "data:image/png;base64," in html


def test_trained_on_reads_the_policys_films_and_days():
    assert trained_on({"microscope": "twin://?seed=1&grid=64"}) == {"samples": [1], "days": [0]}
    assert trained_on({"microscope": "twin://?seed=1&day=3", "samples": [2, 1]}) == {"samples": [1, 2], "days": [3]}
    assert trained_on({"microscope": "socket://127.0.0.1:7001", "days": [0, 1]}) == {"samples": [], "days": [0, 1]}


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"episodes": 0}, ValidationError, r"episodes=0; run at least 1 episode"),
    ({"out": "report.txt"}, ValidationError, r"must name an \.html file"),
    ({"suite": "nowhere"}, ScenarioError, r"nowhere: no such suite"),
])
def test_bad_arguments_run_nothing_and_write_nothing(tmp_path, wall_policy, kwargs, error, match):
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE.format(url=SMALL_TWIN.format(seed=100), other=SMALL_TWIN.format(seed=200)))
    args = {"policy_path": wall_policy, "suite": suite, "out": tmp_path / "r.html", "episodes": 1, **kwargs}
    with pytest.raises(error, match=match):
        validate(**args)
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "r.json").exists()


@pytest.mark.slow
def test_a_served_scenario_gives_every_agent_fresh_films_one_process_each(tmp_path, wall_policy):
    suite = tmp_path / "served.toml"
    options = SMALL_TWIN.format(seed=300).split("?", 1)[1]
    suite.write_text(f"""
[backend]
serve = "emulate"
twin = "{options}"
faults = "drop=0.02"
[plan]
kind = "wall-pulse"
""")
    summary = validate(wall_policy, suite, tmp_path / "served.html", episodes=2, max_steps=2, progress=False)
    (scenario,) = summary["scenarios"]
    assert summary["held_out"]["evaluated_on"]["samples"] == [300, 301]
    for agent, numbers in scenario["agents"].items():
        assert numbers["n"] == 2 and not numbers["errors"], (agent, numbers["errors"])
    policy = scenario["agents"]["policy"]["returns"]
    assert policy[0] != policy[1], "film 301 is not film 300 written on by the first episode"
    again = validate(wall_policy, suite, tmp_path / "again.html", episodes=2, max_steps=2, progress=False)
    assert again["scenarios"][0]["agents"]["policy"]["returns"] == policy, "a fresh process per episode: repeatable"
