"""The agent validation report: statistics by hand and against independent bootstraps, the files, bad input, a browser.

The browser test opens the HTML in Debian's headless Chromium through Playwright (its bundled
driver; no ``playwright install``): ``apt-get install -y -qq chromium`` and
``pip install playwright==1.65.2``.

:func:`screenshot` writes a picture of a report for the README::

    python -m tests.scenarios.test_report docs/images/validation-report.png [report.html]

(without ``report.html`` it shows a report of synthetic results).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mimage
from scipy import stats

from control.errors import PfmTwinError
from scenarios.report import (
    ReportError,
    bootstrap_improvement,
    bootstrap_iqm,
    iqm,
    probability_of_improvement,
    summarize,
    write_validation_report,
)

CHROMIUM = "/usr/bin/chromium"
#: Flags for a headless Chromium that reaches out to nothing (no update checks, no sync, no QUIC).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
REPS = 400  # fewer replicates than the default: the tests check behaviour, not precision


# ----------------------------------------------------------------------------------------------
# Synthetic results


def wall_png(shift: float, bend: float, seed: int = 0) -> bytes:
    """A PFM-phase-like picture of a vertical domain wall, bent by ``bend`` pixels (real PNG bytes)."""
    y, x = np.mgrid[0:48, 0:48]
    wall = 24 + shift + bend * np.sin(2 * np.pi * y / 48)
    phase = np.where(x < wall, 1.0, -1.0) + 0.2 * np.random.default_rng(seed).normal(size=x.shape)
    buffer = io.BytesIO()
    mimage.imsave(buffer, phase, cmap="twilight", format="png")
    return buffer.getvalue()


def entry(returns, *, errors=(), images=True, wall_losses=0, refused=0, limit_hits=2, steps=None) -> dict:
    returns = [float(r) for r in returns]
    episodes = len(returns) + len(errors)
    return {"returns": returns, "wall_losses": wall_losses, "refused": refused, "limit_hits": limit_hits,
            "errors": list(errors), "steps": 20 * episodes if steps is None else steps,
            "wall_time_s": 0.05 * 20 * episodes, "instrument_time_s": 4.0 * 20 * episodes,
            "before_png": wall_png(0, 0) if images else None,
            "after_png": wall_png(1, 4 * (np.mean(returns) if returns else 0), seed=len(returns)) if images else None}


def make_results(k: int = 8, seed: int = 5) -> dict:
    """Three scenarios: the policy clearly beats random, is close to the heuristic; a few crashes."""
    rng = np.random.default_rng(seed)
    scenarios = []
    for i, (name, desc) in enumerate((("trained-film", "the film and day trained on"),
                                      ("other-day", "a film and day not trained on"),
                                      ("rough-film", "a rougher film, <b>not</b> trained on"))):
        crashed = ["TransportError: link lost <after 3 s> & retried"] if i == 2 else []
        scenarios.append({
            "name": name, "url": f"twin://?seed={11 + i}&day={i}&grid=64&field=5e-7", "description": desc,
            "agents": {
                "policy": entry(rng.normal(0.5, 0.1, k - len(crashed)), errors=crashed, wall_losses=i),
                "random": entry(rng.normal(0.0, 0.1, k), images=i != 1, refused=3),
                "heuristic": entry(rng.normal(0.48, 0.1, k)),
            }})
    return {"title": "Agent validation: runs/wall.pt", "policy": "runs/wall.pt", "suite": "scenarios/suites/validation",
            "episodes": k, "seed": 0, "created": "2026-11-30T01:23:45+00:00", "software_version": "0.1.0",
            "held_out": {"trained_on": {"samples": [1], "days": [0]},
                         "evaluated_on": {"samples": [11, 12], "days": [1, 2]}},
            "agents": ["policy", "random", "heuristic"], "scenarios": scenarios}


# ----------------------------------------------------------------------------------------------
# Statistics


def test_iqm_is_the_mean_of_the_middle_half():
    assert iqm(range(1, 9)) == 4.5  # mean of 3, 4, 5, 6
    assert iqm([1, 2, 3, 4, 100, 200, 300, 400]) == pytest.approx((3 + 4 + 100 + 200) / 4)
    assert iqm([400, 1, 300, 2, 200, 3, 100, 4]) == pytest.approx(76.75)  # order does not matter
    assert iqm([1.0, 2.0, 6.0]) == pytest.approx(3.0)  # fewer than 4 runs: nothing trimmed
    assert iqm([7.0]) == 7.0
    with pytest.raises(ReportError, match="at least one"):
        iqm([])


def test_probability_of_improvement_counts_pairs_and_half_ties():
    # x = 1, 2, 3 against y = 0, 2: wins (1,0) (2,0) (3,0) (3,2), one tie (2,2), of 6 pairs.
    assert probability_of_improvement([1, 2, 3], [0, 2]) == pytest.approx(4.5 / 6)
    assert probability_of_improvement([5, 6], [1, 2, 3]) == 1.0
    assert probability_of_improvement([1, 2, 3], [5, 6]) == 0.0
    assert probability_of_improvement([1, 2, 2, 3], [1, 2, 2, 3]) == 0.5
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 5, 9).astype(float), rng.integers(0, 5, 7).astype(float)  # many ties
    u = stats.mannwhitneyu(x, y, alternative="greater").statistic
    assert probability_of_improvement(x, y) == pytest.approx(u / (9 * 7))


def test_bootstrap_iqm_interval_of_one_scenario_matches_scipy_bootstrap():
    x = np.random.default_rng(0).normal(1.0, 2.0, 40)
    point, low, high = bootstrap_iqm([x], reps=20000, rng=np.random.default_rng(1))
    reference = stats.bootstrap((x,), lambda s, axis: stats.trim_mean(s, 0.25, axis=axis), n_resamples=20000,
                                method="percentile", rng=np.random.default_rng(2)).confidence_interval
    assert point == pytest.approx(stats.trim_mean(x, 0.25))
    width = reference.high - reference.low
    assert low == pytest.approx(reference.low, abs=0.05 * width)
    assert high == pytest.approx(reference.high, abs=0.05 * width)
    assert low < point < high


def test_bootstrap_improvement_of_one_scenario_matches_scipy_bootstrap():
    rng = np.random.default_rng(4)
    x, y = rng.normal(0.4, 1, 12), rng.normal(0.0, 1, 9).round(1)

    def poi(a, b, axis):
        a, b = np.moveaxis(a, axis, -1), np.moveaxis(b, axis, -1)
        pairs = (a[..., :, None] > b[..., None, :]) + 0.5 * (a[..., :, None] == b[..., None, :])
        return pairs.mean(axis=(-2, -1))

    reference = stats.bootstrap((x, y), poi, n_resamples=20000, method="percentile", paired=False,
                                rng=np.random.default_rng(5)).confidence_interval
    p, low, high = bootstrap_improvement([x], [y], reps=20000, rng=np.random.default_rng(6))
    assert p == pytest.approx(probability_of_improvement(x, y))
    width = reference.high - reference.low
    assert low == pytest.approx(reference.low, abs=0.05 * width)
    assert high == pytest.approx(reference.high, abs=0.05 * width)


def test_aggregate_intervals_match_a_loop_over_strata_like_rliable():
    """rliable's StratifiedBootstrap, written as a plain loop: resample each scenario's runs, pool, IQM."""
    rng = np.random.default_rng(7)
    tasks = [rng.normal(m, 1, n) for m, n in ((0, 6), (1, 10), (3, 5))]
    others = [rng.normal(m, 1, n) for m, n in ((0.5, 8), (0.5, 10), (2, 7))]
    draw = np.random.default_rng(8)
    iqms, pois = [], []
    for _ in range(6000):
        resampled = [t[draw.integers(0, t.size, t.size)] for t in tasks]
        resampled_other = [t[draw.integers(0, t.size, t.size)] for t in others]
        iqms.append(stats.trim_mean(np.concatenate(resampled), 0.25))
        pois.append(np.mean([probability_of_improvement(a, b) for a, b in zip(resampled, resampled_other)]))
    point, low, high = bootstrap_iqm(tasks, reps=20000, rng=np.random.default_rng(9))
    want_low, want_high = np.percentile(iqms, [2.5, 97.5])
    assert point == pytest.approx(stats.trim_mean(np.concatenate(tasks), 0.25))
    assert (low, high) == pytest.approx((want_low, want_high), abs=0.06 * (want_high - want_low))
    p, low, high = bootstrap_improvement(tasks, others, reps=20000, rng=np.random.default_rng(10))
    want_low, want_high = np.percentile(pois, [2.5, 97.5])
    assert p == pytest.approx(np.mean([probability_of_improvement(a, b) for a, b in zip(tasks, others)]))
    assert (low, high) == pytest.approx((want_low, want_high), abs=0.06 * (want_high - want_low))


def test_the_bootstrap_is_stratified_by_scenario():
    # Each scenario constant: resampling within scenarios never changes the pooled runs, so the
    # interval is a point; resampling the pool (unstratified) would spread it from 0 to 10.
    assert bootstrap_iqm([[0.0] * 4, [10.0] * 4], reps=500, rng=np.random.default_rng(0)) == (5.0, 5.0, 5.0)
    # P = 1 on the first scenario and 0.5 on the second whatever is resampled: 0.75 exactly.
    assert bootstrap_improvement([[2.0, 3.0], [1.0]], [[0.0, 1.0], [1.0, 1.0]], reps=500,
                                 rng=np.random.default_rng(0)) == (0.75, 0.75, 0.75)
    # One run: its interval is the run.
    assert bootstrap_iqm([[0.25]], reps=500, rng=np.random.default_rng(0)) == (0.25, 0.25, 0.25)


def test_bootstrap_arguments_are_checked():
    with pytest.raises(ReportError, match=r"reps is 10;.*>= 200"):
        bootstrap_iqm([[1.0, 2.0]], reps=10, rng=np.random.default_rng(0))
    with pytest.raises(ReportError, match="numpy Generator"):
        bootstrap_iqm([[1.0, 2.0]], reps=500, rng=0)
    with pytest.raises(ReportError, match=r"run counts \[2, 0\]"):
        bootstrap_iqm([[1.0, 2.0], []], reps=500, rng=np.random.default_rng(0))
    with pytest.raises(ReportError, match="2 scenarios of X and 1 of Y"):
        bootstrap_improvement([[1.0], [2.0]], [[1.0]], reps=500, rng=np.random.default_rng(0))


# ----------------------------------------------------------------------------------------------
# The files


def test_report_numbers_and_verdict(tmp_path):
    results = make_results()
    summary = write_validation_report(results, tmp_path / "report.html", reps=REPS, seed=1)
    assert json.loads((tmp_path / "report.json").read_text()) == summary
    assert summary["format"] == "pfmtwin-validation-report/1"
    assert summary["candidate"] == "policy" and summary["baselines"] == ["random", "heuristic"]
    assert summary["bootstrap"] == {"reps": REPS, "seed": 1, "confidence": 0.95,
                                    "method": "percentile; runs resampled with replacement within each scenario"}
    for scenario, given in zip(summary["scenarios"], results["scenarios"]):
        for agent in ("policy", "random", "heuristic"):
            cell, runs = scenario["agents"][agent], given["agents"][agent]["returns"]
            assert cell["n"] == len(runs) and cell["returns"] == runs
            assert cell["iqm"] == pytest.approx(stats.trim_mean(runs, 0.25))
            assert cell["mean"] == pytest.approx(np.mean(runs))
            assert cell["iqm_ci"][0] <= cell["iqm_ci"][1]
            assert cell["wall_s_per_step"] == pytest.approx(0.05)
            assert cell["instrument_s_per_step"] == pytest.approx(4.0)
        x, y = given["agents"]["policy"]["returns"], given["agents"]["random"]["returns"]
        assert scenario["improvement"]["random"]["p"] == pytest.approx(probability_of_improvement(x, y))
        assert scenario["improvement"]["random"]["call"] == "better"  # 0.5 +- 0.1 against 0 +- 0.1
    rough = summary["scenarios"][2]["agents"]["policy"]
    assert (rough["n"], rough["crashes"], rough["wall_losses"]) == (7, 1, 2)
    pooled = [r for s in results["scenarios"] for r in s["agents"]["policy"]["returns"]]
    everywhere = summary["all_scenarios"]
    assert everywhere["agents"]["policy"]["iqm"] == pytest.approx(stats.trim_mean(pooled, 0.25))
    assert everywhere["agents"]["policy"]["n"] == 23 and everywhere["agents"]["policy"]["crashes"] == 1
    assert everywhere["agents"]["random"]["refused"] == 9
    assert everywhere["improvement"]["random"]["p"] == 1.0 and everywhere["improvement"]["random"]["call"] == "better"
    assert everywhere["improvement"]["random"]["scenarios"] == 3
    verdict = summary["verdict"]
    assert verdict["baselines"]["random"] == {"better": 3, "worse": 0, "unclear": 0, "too_few": 0,
                                              "not_comparable": 0, "scenarios": 3, "overall": "better"}
    # 0.5 +- 0.1 against 0.48 +- 0.1 on 8 episodes: no honest claim either way.
    assert verdict["baselines"]["heuristic"]["better"] == 0 and verdict["baselines"]["heuristic"]["worse"] == 0
    assert verdict["lines"][0].startswith("policy beats random on 3 of 3 scenarios")
    assert "policy beats heuristic on 0 of 3 scenarios" in verdict["text"]
    assert verdict["lines"][2] == ("Episodes that lost the wall: policy 3, random 0, heuristic 0; episodes that "
                                   "crashed: policy 1, random 0, heuristic 0; commands the safety guard refused: "
                                   "policy 0, random 9, heuristic 0 (of 24 planned episodes each).")
    assert summary["held_out_overlap"] == {}

    page = (tmp_path / "report.html").read_text()
    assert "policy beats random on 3 of 3 scenarios" in page
    assert "all scenarios" in page and "P(policy &gt; heuristic)" in page
    # Every image inline: the before/after pairs given (random has none on one scenario) + the plot.
    images = sum(e[k] is not None for s in results["scenarios"] for e in s["agents"].values()
                 for k in ("before_png", "after_png"))
    assert images == 16
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == images + 1
    assert page.count('class="missing"') == 2
    assert not re.search(r"(src|href)=\"(?!data:)", page), "a link out of the page"
    assert "<script" not in page.lower()
    # User text is escaped: the description's <b> and the error's <after 3 s> show as text.
    assert "a rougher film, &lt;b&gt;not&lt;/b&gt; trained on" in page
    assert "TransportError: link lost &lt;after 3 s&gt; &amp; retried" in page
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report.json"]


def test_same_input_and_seed_give_the_same_bytes(tmp_path):
    for folder, seed in (("a", 3), ("b", 3), ("c", 4)):
        write_validation_report(make_results(), tmp_path / folder / "report.html", reps=REPS, seed=seed)
    for name in ("report.html", "report.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    a, c = (json.loads((tmp_path / f / "report.json").read_text()) for f in ("a", "c"))
    assert a["scenarios"][0]["agents"]["policy"]["iqm"] == c["scenarios"][0]["agents"]["policy"]["iqm"]
    assert a["scenarios"][0]["agents"]["policy"]["iqm_ci"] != c["scenarios"][0]["agents"]["policy"]["iqm_ci"]


def test_an_agent_without_returns_on_a_scenario_is_not_compared_there(tmp_path):
    results = make_results(k=4)
    results["scenarios"][0]["agents"]["policy"] = entry([], errors=["RuntimeError: boom"] * 4)
    results["held_out"]["evaluated_on"]["samples"] = [1, 12]  # sample 1 was trained on
    summary = write_validation_report(results, tmp_path / "r.html", reps=REPS)
    assert summary["scenarios"][0]["agents"]["policy"]["iqm"] is None
    assert summary["scenarios"][0]["improvement"]["random"] == {"p": None, "ci": None, "call": "not comparable"}
    assert summary["all_scenarios"]["improvement"]["random"]["scenarios"] == 2
    assert summary["verdict"]["baselines"]["random"]["not_comparable"] == 1
    assert "not comparable on 1" in summary["verdict"]["text"]
    assert "Only 4 episodes per scenario: too few to call a difference" in summary["verdict"]["text"]
    # 0.5 +- 0.1 against 0 +- 0.1 separates completely, yet 4 episodes each make no call.
    assert summary["scenarios"][1]["improvement"]["random"]["p"] == 1.0
    assert summary["scenarios"][1]["improvement"]["random"]["call"] == "too few episodes"
    assert summary["all_scenarios"]["improvement"]["random"]["call"] == "too few episodes"
    assert summary["verdict"]["baselines"]["random"]["better"] == 0
    assert summary["verdict"]["baselines"]["random"]["too_few"] == 2
    assert summary["held_out_overlap"] == {"samples": [1]}
    assert "Not all of it is held out: samples 1" in summary["verdict"]["text"]
    page = (tmp_path / "r.html").read_text()
    assert "no episode" in page and "not comparable" in page and "RuntimeError: boom" in page


def test_held_out_keeps_extra_lists_and_unknown_ones(tmp_path):
    results = make_results(k=3)
    results["held_out"] = {"trained_on": {"samples": [np.int64(1)], "days": [0]},
                           "evaluated_on": {"samples": [None, 12], "days": [0, 2]},
                           "held_out_samples": [12], "held_out_days": [2]}
    summary = write_validation_report(results, tmp_path / "r.html", reps=REPS)
    assert summary["held_out"] == {"trained_on": {"samples": [1], "days": [0]},
                                   "evaluated_on": {"samples": [None, 12], "days": [0, 2]},
                                   "held_out_samples": [12], "held_out_days": [2]}
    assert summary["held_out_overlap"] == {"days": [0]}
    assert "days 0 were both trained on and evaluated on" in summary["verdict"]["text"]
    assert "default, 12" in (tmp_path / "r.html").read_text()
    results["held_out"] = None
    summary = write_validation_report(results, tmp_path / "r.html", reps=REPS)
    assert summary["held_out"] is None and summary["held_out_overlap"] == {}
    assert "do not say which films and days" in (tmp_path / "r.html").read_text()


def _broken(change):
    results = make_results(k=3)
    change(results)
    return results


def _set(path, value):
    def change(results):
        target = results
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


def _drop(path):
    def change(results):
        target = results
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return change


def _no_returns(results):
    for scenario in results["scenarios"]:
        for agent in scenario["agents"].values():
            agent["returns"] = []


POLICY = ("scenarios", 1, "agents", "policy")


@pytest.mark.parametrize("change, message", [
    (_drop(("episodes",)), r"results has no key 'episodes'.*add them"),
    (_drop(POLICY + ("refused",)), r"\['policy'\] has no key 'refused'"),
    (_drop(("scenarios", 0, "agents", "heuristic")), r"'trained-film'.*has no key 'heuristic'"),
    (_set(("episodes",), 0), r"results\['episodes'\] is 0; it must be an integer >= 1"),
    (_set(("episodes",), 2), r"has 3 returns, more than results\['episodes'\] = 2"),
    (_no_returns, r"no agent has a single return in any of the 3 scenarios"),
    (_set(POLICY + ("returns",), [0.1, float("nan"), 0.2]), r"'other-day'.*\['returns'\]\[1\] is nan; .*finite"),
    (_set(POLICY + ("returns",), [0.1, float("inf")]), r"\['returns'\]\[1\] is inf"),
    (_set(POLICY + ("returns",), [0.1, "0.2"]), r"\['returns'\]\[1\] is '0.2'"),
    (_set(POLICY + ("wall_time_s",), -1.0), r"\['wall_time_s'\] is -1.0; .*>= 0 s"),
    (_set(POLICY + ("steps",), 2.5), r"\['steps'\] is 2.5; it must be an integer >= 0"),
    (_set(POLICY + ("errors",), "boom"), r"\['errors'\] is 'boom'; it must be a list of strings"),
    (_set(POLICY + ("before_png",), b"GIF89a..."), r"\['before_png'\] is b'GIF89a...', not PNG bytes"),
    (_set(("agents",), ["policy"]), r"two or more distinct agent names"),
    (_set(("scenarios",), []), r"results\['scenarios'\] is \[\]; it must be a non-empty list"),
    (_set(("scenarios", 1, "name"), "trained-film"), r"names must be non-empty and distinct"),
    (_set(("held_out",), {"trained_on": {"samples": 1}, "evaluated_on": {}}), r"\['samples'\] is 1; it must be a list"),
    (_set(("held_out", "evaluated_on", "days"), [1, float("nan")]), r"\['days'\] is \[1, nan\]"),
])
def test_bad_results_are_refused_and_nothing_is_written(tmp_path, change, message):
    (tmp_path / "report.html").write_text("the previous report")
    with pytest.raises(ReportError, match=message) as caught:
        write_validation_report(_broken(change), tmp_path / "report.html", reps=REPS)
    assert isinstance(caught.value, PfmTwinError) and isinstance(caught.value, ValueError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]  # no JSON, no temporary left
    assert (tmp_path / "report.html").read_text() == "the previous report"


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ReportError, match=r"html_path is .*report.json'; the JSON summary would overwrite it"):
        write_validation_report(make_results(), tmp_path / "report.json", reps=REPS)
    with pytest.raises(ReportError, match=r"seed is -1"):
        summarize(make_results(), reps=REPS, seed=-1)
    with pytest.raises(ReportError, match=r"reps is True"):
        summarize(make_results(), reps=True)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------
# The browser


def screenshot(html_path: str | Path, png_path: str | Path, *, width: int = 1280, height: int = 900,
               full_page: bool = True) -> dict:
    """Open ``html_path`` in headless Chromium (Playwright, /usr/bin/chromium) and save a screenshot.

    Args:
        html_path: the page (a report written by :func:`scenarios.report.write_validation_report`).
        png_path: where the screenshot goes (PNG).
        width: viewport width (CSS px).
        height: viewport height (CSS px); ``full_page`` takes the whole page whatever this is.
        full_page: the whole page rather than the first screen.

    Returns:
        ``{"console": [(type, text)], "page_errors": [...], "failed_requests": [(url, why)],
        "requests": [url]}`` as the page loaded.
    """
    from playwright.sync_api import sync_playwright

    seen: dict[str, list] = {"console": [], "page_errors": [], "failed_requests": [], "requests": []}
    url = Path(html_path).resolve().as_uri()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("console", lambda message: seen["console"].append((message.type, message.text)))
            page.on("pageerror", lambda error: seen["page_errors"].append(str(error)))
            page.on("requestfailed", lambda request: seen["failed_requests"].append((request.url, request.failure)))
            page.on("request", lambda request: seen["requests"].append(request.url))
            page.goto(url, wait_until="load")
            page.screenshot(path=str(png_path), full_page=full_page)
        finally:  # the browser goes on every path, even when the page fails to load
            browser.close()
    return seen


def _need_browser() -> None:
    # Fail, not skip: a skipped browser test would hide a missing install step in CI.
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y -qq chromium")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("the playwright package is missing: pip install playwright==1.65.2 (no `playwright install`)")


def test_the_report_opens_in_chromium_without_errors(tmp_path):
    _need_browser()
    write_validation_report(make_results(), tmp_path / "report.html", reps=REPS)
    seen = screenshot(tmp_path / "report.html", tmp_path / "report.png")
    assert [c for c in seen["console"] if c[0] in ("error", "warning")] == []
    assert seen["page_errors"] == [] and seen["failed_requests"] == []
    assert all(u.startswith(("file:", "data:")) for u in seen["requests"]), seen["requests"]
    shot = mimage.imread(tmp_path / "report.png")
    assert shot.shape[1] == 1280 and shot.shape[0] > 2000  # the whole page: table, plot, images
    rgb = np.round(shot[..., :3] * 255).astype(np.uint8).reshape(-1, 3)
    colours = np.unique((rgb[:, 0].astype(np.uint32) << 16) | (rgb[:, 1].astype(np.uint32) << 8) | rgb[:, 2])
    assert colours.size > 200, "a blank or flat screenshot"
    assert np.mean(rgb.min(axis=1) < 200) > 0.05, "hardly anything drawn on the white page"


def _main(argv: list[str]) -> int:
    """``python -m tests.scenarios.test_report OUT.png [REPORT.html]``: a screenshot for the README."""
    if not 1 <= len(argv) <= 2:
        print(__doc__.split("::")[1].strip().splitlines()[0].strip(), file=sys.stderr)
        return 2
    out = Path(argv[0])
    with tempfile.TemporaryDirectory() as folder:
        if len(argv) == 2:
            html_path = Path(argv[1])
        else:
            html_path = Path(folder) / "report.html"
            write_validation_report(make_results(), html_path)
        seen = screenshot(html_path, out)
    bad = [c for c in seen["console"] if c[0] == "error"] + seen["page_errors"] + seen["failed_requests"]
    print(f"{out}: {'problems: ' + repr(bad) if bad else 'loaded cleanly'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
