"""The coupled theory-experiment loop over its own INTERSECT bus (pfmtwin coupled)."""

from __future__ import annotations

import json

from ..conftest import _started_by_tests


def test_the_coupled_loop_compares_theory_with_experiment_and_guided_with_unguided(tmp_path):
    from scenarios.coupled import run

    summary = run("twin://?seed=11&day=2&grid=64&field=5e-7&init=wall&scanner=closed",
                  "twin://?seed=3&grid=64&noise=0&scanner=closed", tmp_path, episodes=2, steps=4, candidates=3)
    saved = json.loads((tmp_path / "coupled.json").read_text())
    episodes = saved["episodes"]
    assert [e["guided"] for e in episodes] == [True, False, True, False]
    for guided, unguided in zip(episodes[::2], episodes[1::2]):
        assert guided["sample"] == unguided["sample"], "both arms of an episode run on the same film"
        assert guided["records"][0]["pulse"] == unguided["records"][0]["pulse"], "and start with the same pulse"
    assert episodes[0]["sample"] != episodes[2]["sample"]
    after = [r for e in episodes for r in e["records"] if not r["calibrating"]]
    assert after and all("predicted_local_m" in r and r["theory_s"] > 0 for r in after)
    assert all(e["up_phase"] is not None for e in episodes if len(e["records"]) > 1 and not e["records"][-1]["calibrating"])
    assert summary["guided"]["episodes"] == summary["unguided"]["episodes"] == 2
    assert summary["compared_steps"] + summary["theory_lost_the_wall"] >= 1
    assert (tmp_path / "coupled.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not _started_by_tests(), "the broker stopped with the run"
