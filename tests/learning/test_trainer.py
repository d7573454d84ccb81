"""The trainer: determinism, learning, a real Dask LocalCluster (sync, async, staleness), policy files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learning.bench import COSTLY_ENV_ID, CostlyEpisodesEnv, bench_sync_async
from learning.compare import compare, markdown_table
from learning.policies import Policy, PolicyFileError, load_policy, save_policy
from learning.svpg import LearningConfigError
from learning.trainer import Progress, TrainResult, dask_client, train


@pytest.fixture(scope="module")
def cluster():
    """A real LocalCluster with 2 worker processes (the default path of ``dask_client``)."""
    with dask_client(workers=2) as client:
        assert sorted(client.nthreads().values()) == [1, 1]
        yield client.scheduler.address


def _same(a: TrainResult, b: TrainResult) -> bool:
    return (a.actor.tobytes() == b.actor.tobytes() and a.critic.tobytes() == b.critic.tobytes()
            and a.curve_returns.tobytes() == b.curve_returns.tobytes() and a.final_returns.tobytes() == b.final_returns.tobytes()
            and a.env_steps == b.env_steps)


TINY = dict(particles=3, steps=900, eval_episodes=2, hidden=(16, 16))


def test_same_seed_same_bytes_and_another_seed_differs() -> None:
    a = train("CartPole-v1", mode="serial", seed=4, **TINY)
    b = train("CartPole-v1", mode="serial", seed=4, **TINY)
    c = train("CartPole-v1", mode="serial", seed=5, **TINY)
    assert _same(a, b)
    assert a.actor.tobytes() != c.actor.tobytes()
    assert a.env_steps >= 900 and np.all(a.updates == a.updates[0])


def test_svpg_and_independent_start_from_the_same_particles_and_then_differ() -> None:
    one = train("CartPole-v1", mode="serial", seed=2, algo="svpg", **{**TINY, "steps": 1})
    two = train("CartPole-v1", mode="serial", seed=2, algo="independent", **{**TINY, "steps": 1})
    # one step each from identical particles and identical rollouts: only the coupling differs
    assert one.env_steps == two.env_steps and np.array_equal(one.curve_returns, two.curve_returns)
    assert not np.array_equal(one.actor, two.actor)
    assert np.abs(one.actor - two.actor).max() < 0.05


def test_sync_training_improves_cartpole_in_a_tiny_budget() -> None:
    events: list[Progress] = []
    r = train("CartPole-v1", mode="serial", particles=4, steps=8000, seed=0, eval_episodes=10, progress=events.append)
    first = r.curve_returns[0]
    assert first < 30  # near-uniform initial policies balance for about 20 steps
    assert r.mean_final_return > 2.5 * first
    assert [e.env_steps for e in events] == list(r.curve_steps)
    assert events[-1].env_steps >= 8000 and events[-1].iterations == r.iterations


def test_a2c_trains_its_critics() -> None:
    r = train("CartPole-v1", mode="serial", estimator="a2c", seed=1, **TINY)
    assert r.spec.critic and r.critic.shape == (3, r.spec.critic_size)
    fresh = train("CartPole-v1", mode="serial", estimator="a2c", seed=1, **{**TINY, "steps": 1})
    assert not np.allclose(r.critic, fresh.critic)


def test_workers_are_prepared_for_numba_torch_and_the_environments(cluster: str) -> None:
    from distributed import Client

    def state() -> tuple[str, int, bool]:
        import os

        import gymnasium
        import torch

        return os.environ.get("NUMBA_THREADING_LAYER", ""), torch.get_num_threads(), "pfmtwin/DomainWall-v0" in gymnasium.registry

    with Client(cluster) as client:
        assert sorted(client.run(state).values()) == [("workqueue", 1, True)] * 2


def test_sync_on_dask_equals_serial_bit_for_bit(cluster: str) -> None:
    serial = train("CartPole-v1", mode="serial", seed=7, **TINY)
    sync = train("CartPole-v1", mode="sync", scheduler=cluster, seed=7, **TINY)
    assert _same(serial, sync)


def test_async_does_not_wait_for_the_slowest_particle(cluster: str) -> None:
    # particle 0's steps cost 20 ms, the others' 1 ms; 10-step episodes
    kwargs = [{"step_seconds": 0.02 if i == 0 else 0.001, "min_length": 10, "max_length": 10} for i in range(4)]
    common = dict(particles=4, steps=1200, seed=0, episodes=1, eval_episodes=0, hidden=(8,))
    r = train(COSTLY_ENV_ID, kwargs, mode="async", scheduler=cluster, **common)
    # the fast particles share the cores unevenly (Dask may queue one's rollout behind particle
    # 0's), and particle 0's last rollout, in flight when the budget runs out, now ends and counts
    fast = r.updates[1:]
    assert fast.mean() > 2 * r.updates[0] >= 2 and fast.min() > r.updates[0], r.updates
    assert r.discarded == 0 and r.max_staleness == 0  # one rollout in flight per particle
    assert r.env_steps >= 1200 and r.curve_steps[-1] == r.env_steps
    s = train(COSTLY_ENV_ID, kwargs, mode="sync", scheduler=cluster, **{**common, "steps": 200})
    assert np.all(s.updates == s.updates[0])  # synchronous: everybody waits for particle 0


def test_async_discards_rollouts_staler_than_the_bound(cluster: str) -> None:
    # one particle on two worker threads: two rollouts in flight, so one is always a step behind
    kwargs = {"step_seconds": 0.002, "min_length": 5, "max_length": 5}
    common = dict(particles=1, steps=300, seed=0, episodes=1, eval_episodes=0, hidden=(8,))
    fresh_only = train(COSTLY_ENV_ID, kwargs, mode="async", scheduler=cluster, staleness=0, **common)
    assert fresh_only.discarded > 0 and fresh_only.max_staleness == 0
    assert fresh_only.updates[0] + fresh_only.discarded == fresh_only.env_steps // 5
    tolerant = train(COSTLY_ENV_ID, kwargs, mode="async", scheduler=cluster, staleness=3, **common)
    assert 1 <= tolerant.max_staleness <= 3


def test_the_local_cluster_listens_on_loopback_only() -> None:
    """Issue 11: the scheduler's HTTP server (dashboard, health, metrics) listened on all interfaces."""
    import ipaddress
    from urllib.parse import urlsplit

    def loopback(address: str) -> bool:
        host = urlsplit(address if "://" in address else f"tcp://{address}").hostname
        return ipaddress.ip_address(host).is_loopback

    with dask_client(workers=1) as client:
        scheduler = client.cluster.scheduler
        assert loopback(client.scheduler.address) and loopback(scheduler.address)
        http = [s.getsockname()[0] for s in scheduler.http_server._sockets.values()]
        assert http and all(ipaddress.ip_address(h).is_loopback for h in http), http
        assert loopback(client.cluster.dashboard_link)
        assert client.scheduler_info()["services"]["dashboard"] == scheduler.http_server.port
        workers = client.run(lambda dask_worker: [dask_worker.address] + [
            f"tcp://{s.getsockname()[0]}:{s.getsockname()[1]}" for s in dask_worker.http_server._sockets.values()])
        assert workers and all(loopback(a) for addresses in workers.values() for a in addresses), workers


def test_train_starts_its_own_local_cluster_by_default() -> None:
    r = train("CartPole-v1", mode="async", workers=2, seed=3, **TINY)
    assert r.env_steps >= 900 and r.updates.sum() >= 3 and np.isfinite(r.final_returns).all()


def test_compare_runs_every_variant_and_seed_as_train_would(cluster: str) -> None:
    opts = dict(particles=2, steps=300, eval_episodes=2, hidden=(8,))
    c = compare("CartPole-v1", seeds=[0, 1], scheduler=cluster, **opts)
    assert set(c.finals) == {"svpg", "independent"} and all(len(v) == 2 for v in c.finals.values())
    assert c.finals["svpg"][1] == train("CartPole-v1", mode="serial", seed=1, **opts).mean_final_return
    table = markdown_table(c)
    assert "| svpg | algo=svpg |" in table and "| independent | algo=independent |" in table


def test_bench_sync_async_reports_both_modes(cluster: str) -> None:
    out = bench_sync_async(particles=2, steps=150, scheduler=cluster, hidden=(8,))
    assert out["sync"]["updates"][0] == out["sync"]["updates"][1] >= 1
    assert out["async"]["env_steps"] >= 150 and out["sync"]["env_steps"] >= 150
    assert out["speedup"] == pytest.approx(out["sync_s_per_it"] / out["async_s_per_it"])


def test_policy_file_round_trip(tmp_path) -> None:
    r = train("CartPole-v1", mode="serial", estimator="a2c", seed=5, **TINY)
    path = tmp_path / "agent.pt"
    r.save(path)
    raw = torch.load(path, weights_only=True)  # plain data and tensors only
    assert raw["format"] == "pfmtwin.policy" and raw["env_id"] == "CartPole-v1"
    f = load_policy(path)
    assert f.env_id == "CartPole-v1" and f.env_kwargs == {} and f.spec == r.spec
    assert np.array_equal(f.actor, r.actor.astype(np.float32)) and np.array_equal(f.critic, r.critic.astype(np.float32))
    assert np.array_equal(f.final_returns, r.final_returns) and f.info["algo"] == "svpg" and f.info["hidden"] == [16, 16]
    assert f.best == int(np.argmax(r.final_returns))
    obs = np.array([0.01, -0.2, 0.03, 0.1])
    for i in range(3):
        direct = Policy(r.spec, r.actor[i].astype(np.float32))
        assert f.policy(i).act(obs) == direct.act(obs)
        rng_a, rng_b = np.random.default_rng(0), np.random.default_rng(0)
        assert [f.policy(i).act(obs, rng_a) for _ in range(5)] == [direct.act(obs, rng_b) for _ in range(5)]


def test_policy_file_errors(tmp_path) -> None:
    with pytest.raises(PolicyFileError, match="cannot read"):
        load_policy(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a policy")
    with pytest.raises(PolicyFileError, match="cannot read"):
        load_policy(junk)
    other = tmp_path / "other.pt"
    torch.save({"format": "something"}, other)
    with pytest.raises(PolicyFileError, match="not a pfmtwin policy file"):
        load_policy(other)
    r = train("CartPole-v1", mode="serial", seed=0, **{**TINY, "steps": 1})
    content = r.policy_file()
    content.info["env"] = CostlyEpisodesEnv()
    with pytest.raises(PolicyFileError, match=r"info\['env'\].*plain data"):
        save_policy(tmp_path / "bad.pt", content)


@pytest.mark.parametrize(("options", "message"), [
    ({"particles": 0}, "particles=0"),
    ({"algo": "ppo"}, "unknown algo 'ppo'"),
    ({"mode": "threads"}, "unknown mode 'threads'"),
    ({"estimator": "ppo"}, "unknown estimator 'ppo'"),
    ({"steps": 0}, "steps=0"),
    ({"lr": -1.0}, "lr=-1.0"),
    ({"staleness": -1}, "staleness=-1"),
    ({"host": "tcp://127.0.0.1:8786"}, r"host='tcp://127.0.0.1:8786'; give the address of one interface without"),
    ({"host": ""}, r"host=''; .*'127.0.0.1' \(this machine only, the default\)"),
    ({"mode": "serial", "scheduler": "tcp://127.0.0.1:1"}, "use mode='sync' or 'async'"),
    ({"learning_rate": 0.1}, r"unknown training option\(s\) \['learning_rate'\]"),
])
def test_bad_options_are_refused_by_name(options: dict, message: str) -> None:
    with pytest.raises(LearningConfigError, match=message):
        train("CartPole-v1", **options)


def test_per_particle_env_kwargs_must_match_the_particles() -> None:
    with pytest.raises(LearningConfigError, match="2 dicts for 3 particles"):
        train(COSTLY_ENV_ID, [{}, {}], particles=3, mode="serial")


def test_unreadable_policy_files_are_refused_clearly_not_with_index_or_key_errors(tmp_path) -> None:
    """Issue 11: /etc/passwd gave IndexError, a policy missing an entry KeyError."""
    r = train("CartPole-v1", mode="serial", seed=0, **{**TINY, "steps": 1})
    r.save(tmp_path / "good.pt")
    good = torch.load(tmp_path / "good.pt", weights_only=True)

    def variant(name: str, drop: str = "", **replace) -> str:
        content = {k: v for k, v in good.items() if k != drop}
        content.update(replace)
        torch.save(content, tmp_path / name)
        return name

    (tmp_path / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (tmp_path / "random.pt").write_bytes(np.random.default_rng(1).bytes(2048))
    torch.save({"x": 1}, tmp_path / "junk.pt")
    torch.save({k: good[k] for k in ("format", "version")}, tmp_path / "header-only.pt")
    cases = {
        "passwd": "not a PyTorch file",
        "random.pt": "not a PyTorch file",
        "junk.pt": "is not a pfmtwin policy file: format (None, None)",
        "header-only.pt": "without its entry 'env_id'",
        variant("no-actor.pt", drop="actor"): "without its entry 'actor'",
        variant("no-spec.pt", drop="spec"): "without its entry 'spec'",
        variant("bad-spec.pt", spec={**good["spec"], "action_kind": "steer"}): "garbled entry 'spec'",
        variant("spec-keys.pt", spec={"hidden": [4]}): "garbled entry 'spec': no key",
        variant("short-critic.pt", critic=torch.zeros(1, 5)): "'critic'",
        variant("returns.pt", final_returns=[1.0]): "'final_returns'",
        variant("kwargs.pt", env_kwargs=[{}]): "'env_kwargs'",
    }
    for name, reason in cases.items():
        with pytest.raises(PolicyFileError) as info:
            load_policy(tmp_path / name)
        message = str(info.value)
        assert "policy file" in message and name in message and reason in message, (name, message)
        assert "\n" not in message and message.endswith("write one with 'pfmtwin agent train ... --out FILE'"), message
    assert load_policy(tmp_path / "good.pt").actor.shape == (3, r.spec.actor_size)


@pytest.mark.parametrize("mode", ["serial", "sync", "async"])
def test_the_step_budget_bounds_the_steps_run_and_every_step_run_is_counted(request, tmp_path, mode) -> None:
    """Issue 11: `agent train --steps 200` ran 466 steps: every rollout played all its episodes.

    Now no rollout starts once the budget is used up and a rollout starts no episode past its
    share, so at most one episode per rollout in flight runs past the budget; async waits for
    the rollouts in flight instead of cancelling running ones uncounted.
    """
    from tests.learning.counting import COUNTING_ENV_ID

    log = tmp_path / "steps.log"
    kwargs = {"log": str(log), "step_seconds": 0.002, "min_length": 6, "max_length": 10}
    budget, particles, longest = 25, 3, 10
    seen: list = []
    options = dict(particles=particles, steps=budget, seed=1, episodes=4, eval_episodes=0, hidden=(8,))
    if mode != "serial":
        options["scheduler"] = request.getfixturevalue("cluster")  # 2 worker threads: 1 rollout in flight each
    r = train(COUNTING_ENV_ID, kwargs, mode=mode, progress=seen.append, **options)
    run = log.stat().st_size
    assert r.env_steps == run, "every environment step run is counted"
    assert budget <= run <= budget + particles * longest, run  # was 3 x 4 episodes >= 72 steps
    assert seen[-1].env_steps == r.env_steps and seen[-1].budget == budget
    assert r.curve_steps[-1] <= r.env_steps and r.updates.sum() >= particles


def test_the_progress_bar_counts_the_steps_run(tmp_path, capsys) -> None:
    from tests.learning.counting import COUNTING_ENV_ID

    kwargs = {"log": str(tmp_path / "steps.log"), "step_seconds": 0.0, "min_length": 6, "max_length": 10}
    r = train(COUNTING_ENV_ID, kwargs, mode="serial", progress=True, particles=3, steps=25, seed=1, episodes=4,
              eval_episodes=0, hidden=(8,))
    last = capsys.readouterr().err.split("\r")[-1]
    assert r.env_steps > 25 and f"| {r.env_steps}/{r.env_steps} " in last and "budget=25" in last, last
