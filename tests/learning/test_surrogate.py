"""The surrogate backend: transitions from the twin through the contract, a deterministic fit
that beats the no-change baseline on held-out transitions, a ``surrogate://`` backend that
passes Gymnasium's checker under DomainWall-v0, scans that show the wall it holds, clear errors."""

from __future__ import annotations

import subprocess
import sys

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import control
import learning
from control import InstrumentError, LimitError, UrlError
from control.analysis import trace_wall
from learning.surrogate import main
from learning.surrogate_backend import Surrogate
from learning.surrogate_data import Transitions, TransitionsError, collect_transitions
from learning.surrogate_fit import evaluate_surrogate, fit_surrogate
from learning.surrogate_model import FILE_FORMAT, SurrogateFileError, load_model

from ..conftest import SMALL_TWIN

URL = SMALL_TWIN.format(seed=3)
WINDOW = control.ScanSpec(center=(2.5e-7, 2.5e-7), size=(4e-7, 4e-7), pixels=(32, 32), line_rate=10.0)
FIT = {"epochs": 300, "holdout": 0.25}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """Training transitions (12+ episodes), held-out ones from other actions, and a model fitted on the first."""
    root = tmp_path_factory.mktemp("surrogate")
    train = collect_transitions(URL, 240, seed=0, episode_steps=20, out=root / "train.npz")
    held_out = collect_transitions(URL, 40, seed=1, episode_steps=20)
    model = root / "model.pt"
    provenance = fit_surrogate(root / "train.npz", model, seed=0, **FIT)
    return {"root": root, "train": train, "held_out": held_out, "model": model, "provenance": provenance}


def surrogate_url(data: dict, options: str = "") -> str:
    return f"surrogate://{data['model']}" + (f"?{options}" if options else "")


# -- collection -------------------------------------------------------------------------------


def test_transitions_record_wall_profiles_and_emitted_pulses(data):
    train = data["train"]
    assert len(train) == 240 and train.before.shape == train.after.shape == (240, len(train.y))
    episodes, counts = np.unique(train.episode, return_counts=True)
    # A fresh sample every 20 pulses; an episode whose wall left the scan at its first pulse
    # records nothing, so episode numbers may skip.
    assert np.all(np.diff(train.episode) >= 0) and np.all(np.diff(episodes) >= 1)
    assert counts.max() == 20 and len(episodes) >= 240 // 20, "a fresh sample every 20 pulses"
    assert np.all(np.diff(train.y) > 0) and train.y[0] < 10e-9 and train.y[-1] > 490e-9, "the whole film height"
    same = train.episode[1:] == train.episode[:-1]
    assert np.array_equal(train.before[1:][same], train.after[:-1][same]), "each profile follows the previous pulse"
    x, y, amplitude, width = train.pulse.T
    assert np.all((4.0 <= np.abs(amplitude)) & (np.abs(amplitude) <= 10.0)), "the env's voltage range"
    assert np.all((1e-5 <= width * (1 + 1e-9)) & (width <= 1e-2 * (1 + 1e-9))), "the env's width range"
    assert np.all((50e-9 <= y) & (y <= 450e-9)), "pulses within the env's window"
    wall_at_pulse = np.array([np.interp(py, train.y, row) for py, row in zip(y, train.before)])
    assert np.all(np.abs(x - wall_at_pulse) <= 100e-9 * (1 + 1e-9)), "within the env's offset range of the wall"
    assert 1e-9 < train.meta["noise_rms"] < 8e-9, "scan-to-scan noise of a 2-scan profile on the small twin"
    assert train.meta["field"] == 5e-7 and train.meta["source"] == URL


def test_transitions_survive_the_npz_file(data, tmp_path):
    loaded = Transitions.load(data["root"] / "train.npz")
    for name in ("y", "before", "after", "pulse", "episode"):
        assert np.array_equal(getattr(loaded, name), getattr(data["train"], name))
    assert loaded.meta["source"] == URL and loaded.meta["initial"] == data["train"].meta["initial"]
    train, test = loaded.split(0.25)
    assert len(train) + len(test) == len(loaded) and test.episode.min() > train.episode.max(), "whole late episodes"
    with pytest.raises(TransitionsError, match=r"holdout=1.5 must be a fraction"):
        loaded.split(1.5)
    with pytest.raises(TransitionsError, match=r"cannot read transitions file .*nothing.npz"):
        Transitions.load(tmp_path / "nothing.npz")
    with pytest.raises(TransitionsError, match=r"n=0 must be a whole number >= 1"):
        collect_transitions(URL, 0)


# -- the model ------------------------------------------------------------------------------


def test_the_fit_beats_the_no_change_baseline_on_held_out_transitions(data):
    held = data["provenance"]["held_out_nm"]
    assert held["local_rms"] < 0.7 * held["local_baseline_rms"], held
    result = evaluate_surrogate(data["model"], data["held_out"], steps=0)
    assert result["transitions"] == 40
    assert result["local_rms_nm"] < 0.7 * result["local_baseline_rms_nm"], result
    assert result["profile_rms_nm"] < result["profile_baseline_rms_nm"], result
    assert result["local_rms_nm"] > result["noise_rms_nm"] / 2, "no model beats the measurement noise by much"


def test_same_data_and_seed_give_the_same_bytes(data, tmp_path):
    again, other = tmp_path / "again.pt", tmp_path / "other.pt"
    fit_surrogate(data["root"] / "train.npz", again, seed=0, **FIT)
    fit_surrogate(data["train"], other, seed=1, **FIT)
    assert again.read_bytes() == data["model"].read_bytes()
    assert other.read_bytes() != data["model"].read_bytes()


def test_the_model_file_is_plain_data_and_tensors(data):
    content = torch.load(data["model"], weights_only=True)
    assert (content["format"], content["version"]) == FILE_FORMAT
    assert content["provenance"]["source"] == URL and content["provenance"]["transitions"] == 240
    assert content["provenance"]["held_out_nm"] == data["provenance"]["held_out_nm"]
    assert content["film"]["field"] == 5e-7 and len(content["film"]["phase"]) == 2
    assert content["instrument"]["limits"]["bias_max"] == 10.0


def test_opposite_pulses_push_the_wall_opposite_ways(data):
    """Positive bias writes the right (down) domain, negative the left (up) one: a pulse just
    left of the wall pulls it left, one just right of it pushes it right, far lines stay."""
    model = load_model(data["model"])
    y = model.film["y"]
    profile = np.full((2, len(y)), 2.5e-7)
    pulses = np.array([[2.3e-7, 2.5e-7, 9.0, 3e-3], [2.7e-7, 2.5e-7, -9.0, 3e-3]])
    change, ys = model.predict(y, profile, pulses)
    mid = model.points // 2
    assert change[0, mid] < -20e-9 and change[1, mid] > 20e-9, change[:, mid]
    assert np.all(np.abs(change[:, [0, -1]]) < np.abs(change[:, [mid]])), "the change is largest at the pulse"


# -- the backend ----------------------------------------------------------------------------


def test_connect_opens_it_and_the_env_checker_passes(data):
    with control.connect(surrogate_url(data)) as scope:
        info = scope.info()
        assert info.backend == "surrogate" and info.options["field"] == 5e-7 and info.options["source"] == URL
    with control.connect(URL) as source:
        assert info.limits == source.info().limits  # the limits of the twin it was fitted on
    env = gymnasium.make(learning.ENV_ID, microscope=surrogate_url(data))
    check_env(env.unwrapped)
    env.close()


def test_the_backend_needs_the_model_only_not_gymnasium_or_the_env(data):
    """Its module, and opening and using surrogate:// through the entry point, import neither
    Gymnasium nor the environment (nor the collection and the fit that use them)."""
    code = ("import sys, control, learning.surrogate_backend; "
            f"scope = control.connect({surrogate_url(data)!r}); "
            f"scope.scan(control.ScanSpec(**{WINDOW.to_dict()!r})); scope.apply_pulse(2.5e-7, 2.5e-7, 9.0, 1e-3); "
            "scope.close(); "
            "loaded = [m for m in sys.modules if m.split('.')[0] == 'gymnasium' or m in "
            "('learning.env', 'learning.surrogate_data', 'learning.surrogate_fit')]; "
            "assert not loaded, loaded")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_same_seed_gives_identical_episodes(data):
    def episode() -> list:
        env = gymnasium.make(learning.ENV_ID, microscope=surrogate_url(data, "seed=2&noise=5"), max_steps=5)
        env.action_space.seed(4)
        obs, info = env.reset(seed=1)
        out = [obs.tobytes(), info["time"]]
        for _ in range(5):
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            out += [obs.tobytes(), reward, info["time"]]
            if terminated or truncated:
                break
        env.close()
        return out

    first = episode()
    assert first == episode()
    assert len(first) > 2 and first[-1] > first[1], "time advances"


def test_scans_show_the_wall_it_holds(data):
    backend = control.open_backend(surrogate_url(data))
    assert isinstance(backend, Surrogate)
    for step in range(3):
        scan = backend.scan(WINDOW)
        wall = trace_wall(scan, smooth=1)
        held = backend.wall(wall.y)
        assert wall.crossing and np.abs(wall.x - held).max() < 0.1e-9, f"step {step}: sub-pixel, exact"
        assert np.median(np.abs(trace_wall(scan).x - held)) < 0.5e-9, "the env's median-filtered trace too"
        assert np.all(scan.amplitude[np.arange(32), ((held - 5e-8) / 12.5e-9).astype(int)] < 0.5 * scan.amplitude.max())
        backend.apply_pulse(float(held[16]) - 30e-9, float(wall.y[16]), 9.0, 1e-3)
    lines = []
    spec = control.ScanSpec(center=(2.5e-7, 2.5e-7), size=(4e-7, 4e-7), pixels=(16, 8), line_rate=5.0, retrace=True)
    before = backend.now()
    result = backend.scan(spec, lambda i, t, channels: lines.append((i, t, sorted(channels))))
    assert [i for i, _, _ in lines] == list(range(8)) and lines[0][2][-1] == "phase_retrace"
    assert np.allclose(np.diff(result.line_times), 2 / 5.0) and backend.now() >= before + 8 * 2 / 5.0


def test_it_starts_from_the_twins_wall(data):
    with control.connect(URL) as twin, control.connect(surrogate_url(data)) as surrogate:
        real, learned = trace_wall(twin.scan(WINDOW)), trace_wall(surrogate.scan(WINDOW))
    assert np.sqrt(np.mean((real.x - learned.x) ** 2)) < 6e-9, "within the twin's scan noise"


def test_noise_is_seeded(data):
    scans = {}
    for options in ("seed=1&noise=10", "seed=1&noise=10", "seed=2&noise=10"):
        with control.connect(surrogate_url(data, options)) as scope:
            scans.setdefault(options, []).append(scope.scan(WINDOW).phase)
    assert np.array_equal(*scans["seed=1&noise=10"])
    assert not np.array_equal(scans["seed=1&noise=10"][0], scans["seed=2&noise=10"][0])


def test_a_pulse_outside_the_limits_is_refused_before_the_surrogate(data):
    with control.connect(surrogate_url(data)) as scope:
        first = scope.scan(WINDOW).phase
        t = scope.now()
        with pytest.raises(LimitError, match=r"amplitude=20.0 V exceeds the bias limit"):
            scope.apply_pulse(2.5e-7, 2.5e-7, 20.0, 1e-3)
        with pytest.raises(LimitError, match=r"pulse position: x=-1e-07 m is outside"):
            scope.apply_pulse(-1e-7, 2.5e-7, 5.0, 1e-3)
        assert scope.now() == t, "nothing reached the surrogate"
        assert np.array_equal(scope.scan(WINDOW).phase, first), "the wall did not move"


def test_waveforms_are_not_modelled(data):
    with pytest.raises(InstrumentError, match=r"does not model waveforms"):
        control.open_backend(surrogate_url(data)).apply_waveform(None)


@pytest.mark.parametrize(
    ("url", "error", "match"),
    [
        ("surrogate://", UrlError, r"names no model file; write surrogate:///abs/path/model.pt"),
        ("surrogate:///no/such/model.pt", SurrogateFileError, r"cannot read surrogate model file '/no/such/model.pt': no such file; write one"),
        ("surrogate:///{model}?colour=red", UrlError, r"unknown option\(s\) 'colour'.*accepted: seed="),
        ("surrogate:///{model}?noise=-1", UrlError, r"option noise='-1' .* is invalid"),
        ("surrogate:///{garbage}", SurrogateFileError, r"cannot read surrogate model file .*garbage.pt"),
        ("surrogate:///{policy}", SurrogateFileError, r"is not a pfmtwin surrogate model file: format \('pfmtwin.policy', 1\)"),
    ],
)
def test_bad_urls_and_files_are_refused_clearly(data, tmp_path, url, error, match):
    (tmp_path / "garbage.pt").write_text("not a model")
    torch.save({"format": "pfmtwin.policy", "version": 1}, tmp_path / "policy.pt")
    url = url.format(model=str(data["model"]).lstrip("/"), garbage=str(tmp_path / "garbage.pt").lstrip("/"),
                     policy=str(tmp_path / "policy.pt").lstrip("/"))
    with pytest.raises(error, match=match):
        control.connect(url)


def test_command_line_prints_json(data, capsys):
    assert main(["evaluate", str(data["model"]), str(data["root"] / "train.npz"), "--steps", "0"]) == 0
    assert '"local_rms_nm"' in capsys.readouterr().out
    assert main(["fit", str(data["root"] / "missing.npz"), "--out", str(data["root"] / "x.pt")]) == 2
    assert "cannot read transitions file" in capsys.readouterr().err


# -- pfmtwin bench agents ------------------------------------------------------------------------


@pytest.mark.slow
def test_bench_agents_reports_twin_and_surrogate_speed_and_both_modes(data):
    from learning.bench import bench_agents

    out = bench_agents(URL, repeat=1, particles=2, surrogate=data["model"], env_steps=4, lengths=(1, 3))
    rates = out["env_steps_per_s"]
    assert rates["twin"] > 0 and rates["surrogate"] > 0
    assert rates["speedup"] == pytest.approx(rates["surrogate"] / rates["twin"])
    svpg = out["svpg"]
    assert len(svpg["episode_lengths"]) == 2 and all(1 <= n <= 3 for n in svpg["episode_lengths"])
    for mode in ("sync", "async"):
        assert svpg[mode]["s_per_it"] > 0 and sum(svpg[mode]["updates"]) >= 2
        assert 0 < svpg[mode]["worker_busy"] <= 1.0
    assert svpg["speedup"] == pytest.approx(svpg["sync_s_per_it"] / svpg["async_s_per_it"])
    assert "surrogate" not in out, "a given model file is used as it is, not refitted"


def _model_without(data: dict, path, *keys: str, **replace) -> str:
    """The fitted model file with entries removed (``"net.0.weight"``: inside ``net``) or replaced."""
    content = torch.load(data["model"], weights_only=True)
    for key in keys:
        outer, _, inner = key.partition(".")
        del (content[outer] if inner else content)[inner or outer]
    content.update(replace)
    torch.save(content, path)
    return str(path)


def test_unreadable_files_are_refused_clearly_not_with_index_or_key_errors(data, tmp_path, monkeypatch):
    """Issue 11: text (/etc/passwd), random bytes, junk .pt files and models missing keys."""
    passwd = tmp_path / "etc" / "passwd"
    passwd.parent.mkdir()
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n")
    (tmp_path / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "eof.pt").write_bytes(b")" * 20)
    torch.save({"x": 1}, tmp_path / "junk.pt")
    torch.save({"format": FILE_FORMAT[0], "version": FILE_FORMAT[1]}, tmp_path / "empty.pt")
    cases = {
        f"surrogate://{passwd}": (str(passwd), "not a PyTorch file"),
        "surrogate://../etc/passwd": ("'../etc/passwd' ('" + str(passwd) + "')", "not a PyTorch file"),
        f"surrogate://{tmp_path / 'random.pt'}": ("random.pt", "not a PyTorch file"),
        f"surrogate://{tmp_path / 'eof.pt'}": ("eof.pt", "not a PyTorch file"),
        f"surrogate://{tmp_path / 'junk.pt'}": ("junk.pt", "not a pfmtwin surrogate model file: format (None, None)"),
        f"surrogate://{tmp_path / 'empty.pt'}": ("empty.pt", "without its entry 'arch'"),
        "surrogate://" + _model_without(data, tmp_path / "no-std.pt", "in_std"): ("no-std.pt", "entry 'in_std'"),
        "surrogate://" + _model_without(data, tmp_path / "no-layer.pt", "net.1.bias"): ("no-layer.pt", "'net'"),
        "surrogate://" + _model_without(data, tmp_path / "no-source.pt", "provenance.source"): ("no-source.pt",
                                                                                               "'source'"),
        "surrogate://" + _model_without(data, tmp_path / "bad-hw.pt", instrument={"hardware": {"volts": 1},
                                                                                  "limits": {}, "identity": ""}):
            ("bad-hw.pt", "'instrument'"),
        "surrogate://" + _model_without(data, tmp_path / "bad-arch.pt", arch={"span": 1.5e-7, "points": 7}):
            ("bad-arch.pt", "points"),
    }
    monkeypatch.chdir(tmp_path / "etc")
    for url, (path, reason) in cases.items():
        with pytest.raises(SurrogateFileError) as info:
            control.connect(url)
        message = str(info.value)
        assert "surrogate model file" in message and path in message and reason in message, (url, message)
        assert "\n" not in message and message.endswith("write one with 'pfmtwin agent surrogate fit TRANSITIONS.npz "
                                                        "--out MODEL.pt'"), message
    assert main(["evaluate", str(passwd), str(data["root"] / "train.npz"), "--steps", "0"]) == 2
