"""``pfmtwin agent train|run``: the real console script, a real emulator process, real files."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from control.served import Served
from learning.policies import load_policy
from scenarios.cli import main

PFMTWIN = [sys.executable, "-m", "scenarios.cli"]
TWIN_OPTIONS = "grid=64&field=5e-7&init=wall&scanner=closed"


def pfmtwin(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """The console script in a fresh process."""
    return subprocess.run([*PFMTWIN, *args], capture_output=True, text=True, timeout=timeout)


def in_process(capsys, *args: str) -> tuple[int, str, str]:
    """The same command line through ``scenarios.cli.main`` in this process (no start-up cost)."""
    try:
        code = main(list(args))
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_train_writes_policy_curve_and_json_line(tmp_path, capsys):
    out = tmp_path / "cartpole.pt"
    p = pfmtwin("agent", "train", "--env", "CartPole-v1", "--algo", "independent", "--particles", "3",
                "--steps", "3000", "--seed", "2", "--mode", "serial", "--eval-episodes", "2", "--out", str(out))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1, "stdout holds exactly the final JSON line (progress goes to stderr)"
    summary = json.loads(lines[0])
    assert summary["algo"] == "independent" and summary["particles"] == 3
    assert len(summary["final_returns"]) == 3
    assert summary["mean_return"] == pytest.approx(np.mean(summary["final_returns"]))
    assert summary["env_steps"] >= 3000
    assert "step" in p.stderr  # the tqdm bar
    pf = load_policy(out)
    assert pf.env_id == "CartPole-v1" and pf.actor.shape[0] == 3
    png = out.with_suffix(".png")
    assert summary["curve"] == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    umask = os.umask(0o022)
    os.umask(umask)
    for written in (out, png):  # as open() creates files, like the session recordings (0o644 under umask 022)
        assert stat.S_IMODE(written.stat().st_mode) == 0o666 & ~umask, written

    code, _, err = in_process(capsys, "agent", "train", "--env", "CartPole-v1", "--steps", "100", "--out", str(out))
    assert code == 2 and "exists" in err and "--force" in err
    assert load_policy(out).info["algo"] == "independent", "the refused run left the file alone"


@pytest.mark.parametrize(("args", "message"), [
    (["--env", "NoSuchEnv-v0"], "NoSuchEnv-v0"),
    (["--env", "CartPole-v1", "--env-kwargs", '{"microscope": "twin://"}'], "does not accept keyword arguments"),
    (["--env", "CartPole-v1", "--particles", "0"], "particles=0"),
])
def test_train_refuses_bad_options_before_writing(tmp_path, capsys, args, message):
    out = tmp_path / "p.pt"
    code, _, err = in_process(capsys, "agent", "train", "--steps", "100", "--mode", "serial", "--out", str(out), *args)
    assert code == 2
    assert message in err
    assert not out.exists() and not out.with_suffix(".png").exists()


def test_train_env_kwargs_must_be_a_json_object(tmp_path, capsys):
    code, _, err = in_process(capsys, "agent", "train", "--steps", "10", "--out", str(tmp_path / "p.pt"),
                              "--env-kwargs", "{microscope: 1}")
    assert code == 2 and "is not JSON" in err


def test_run_missing_policy_file_is_a_clear_error(tmp_path, capsys):
    code, _, err = in_process(capsys, "agent", "run", "--policy", str(tmp_path / "none.pt"))
    assert code == 2 and "cannot read policy file" in err


def test_run_unreadable_policy_files_exit_2_with_one_line(tmp_path, capsys, monkeypatch):
    """Issue 11: `agent run --policy /etc/passwd` ended in an IndexError traceback."""
    import torch

    (tmp_path / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (tmp_path / "random.pt").write_bytes(np.random.default_rng(2).bytes(1000))
    torch.save({"x": 1}, tmp_path / "junk.pt")
    torch.save({"format": "pfmtwin.policy", "version": 1}, tmp_path / "header.pt")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    for policy, reason in [(str(tmp_path / "passwd"), "not a PyTorch file"), ("../passwd", "not a PyTorch file"),
                           (str(tmp_path / "random.pt"), "not a PyTorch file"),
                           (str(tmp_path / "junk.pt"), "is not a pfmtwin policy file"),
                           (str(tmp_path / "header.pt"), "without its entry 'env_id'")]:
        code, out, err = in_process(capsys, "agent", "run", "--policy", policy)
        assert code == 2 and out == "", (policy, err)
        assert err.count("\n") == 1 and err.startswith("pfmtwin: error: ") and "Traceback" not in err, err
        assert repr(policy) in err and "policy file" in err and reason in err and "pfmtwin agent train" in err, err
    p = pfmtwin("agent", "run", "--policy", str(tmp_path / "passwd"), timeout=120)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and "not a PyTorch file" in p.stderr and "Traceback" not in p.stderr, p.stderr


def _run_lines(policy: Path, microscope: str) -> list[dict]:
    p = pfmtwin("agent", "run", "--microscope", microscope, "--policy", str(policy), "--episodes", "2",
                "--seed", "3", "--sample")
    assert p.returncode == 0, p.stderr
    return [json.loads(line) for line in p.stdout.strip().splitlines()]


@pytest.mark.slow
def test_same_policy_same_actions_and_rewards_on_twin_and_emulator(wall_policy):
    """Deployed unchanged: twin://?seed=3 in process, and `pfmtwin emulate --seed 3 --speed max`."""
    with Served("emulate", "--listen", "socket://127.0.0.1:0", "--seed", "3", "--speed", "max",
                "--twin", TWIN_OPTIONS) as emulator:
        on_emulator = _run_lines(wall_policy, emulator.url)
    on_twin = _run_lines(wall_policy, f"twin://?seed=3&{TWIN_OPTIONS}")
    assert len(on_twin) == 6  # 2 episodes of max_steps=3 (the wall survives them on this film)
    assert [r["episode"] for r in on_twin] == [0, 0, 0, 1, 1, 1]
    for t, e in zip(on_twin, on_emulator, strict=True):
        assert t["action"] == e["action"]
        assert t["reward"] == e["reward"]
        assert t["pulse"] == e["pulse"] and t["time"] == e["time"]
    assert len({json.dumps(r["action"]) for r in on_twin}) == 6, "sampled actions differ from step to step"


def test_random_baseline_runs_in_the_policys_environment_reproducibly(wall_policy, capsys):
    url = f"twin://?seed=3&{TWIN_OPTIONS}"
    runs = []
    for _ in range(2):
        code, out, err = in_process(capsys, "agent", "run", "--microscope", url, "--policy", str(wall_policy),
                                    "--episodes", "1", "--seed", "4", "--random")
        assert code == 0, err
        runs.append([json.loads(line) for line in out.strip().splitlines()])
        summary = json.loads(err.strip().splitlines()[-1])
        assert summary["mean_return"] == pytest.approx(sum(r["reward"] for r in runs[-1]))
    assert runs[0] == runs[1], "same seed, same random actions and rewards"
    actions = np.array([r["action"] for r in runs[0]])
    assert len(actions) == 3 and np.all(np.abs(actions) <= 1.0)  # max_steps=3 from the policy file
    code, out, _ = in_process(capsys, "agent", "run", "--microscope", url, "--policy", str(wall_policy),
                              "--episodes", "1", "--seed", "4")
    assert [json.loads(line)["action"] for line in out.strip().splitlines()] != actions.tolist()


def test_bench_episode_lengths_refuse_an_empty_range():
    from learning.bench import episode_lengths
    from learning.svpg import LearningConfigError

    assert all(2 <= n <= 16 for n in episode_lengths(8, seed=1))
    with pytest.raises(LearningConfigError, match=r"episode lengths \[5, 2\] must satisfy 1 <= low <= high"):
        episode_lengths(8, low=5, high=2)
