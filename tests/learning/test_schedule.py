"""The scheduling model of the trainer (learning.schedule): hand-computable cases, calibration,
and costs measured on the real learner."""

from __future__ import annotations

import pytest

from learning.bench import COSTLY_ENV_ID
from learning.schedule import ScheduleCosts, calibrate, measure_costs, measure_updates, predict


def costs(*rollouts: float, update: float = 0.0, sync_update: float = 0.0, dispatch: float = 0.0) -> ScheduleCosts:
    return ScheduleCosts(rollouts=tuple((r,) for r in rollouts), update_s=update, sync_update_s=sync_update,
                         dispatch_s=dispatch)


def test_equal_rollouts_one_worker_each_make_sync_and_async_the_same():
    (row,) = predict(costs(1.0, 1.0, 1.0, 1.0), [4], iterations=20)
    assert row["sync_s_per_it"] == pytest.approx(1.0) and row["async_s_per_it"] == pytest.approx(1.0)


def test_async_gains_what_the_barrier_wastes_on_unequal_rollouts():
    # Particle 0 returns every 1 s, particle 1 every 2 s: sync waits 2 s per iteration (2 updates);
    # async makes 1.5 updates per second, so an iteration of 2 updates takes 4/3 s.
    (row,) = predict(costs(1.0, 2.0), [2], iterations=60)
    assert row["sync_s_per_it"] == pytest.approx(2.0)
    assert row["async_s_per_it"] == pytest.approx(4 / 3, rel=0.02)
    assert row["speedup"] == pytest.approx(1.5, rel=0.02)


def test_the_sync_step_and_the_latency_add_to_each_iteration_and_one_driver_limits_async():
    (row,) = predict(costs(1.0, 1.0, update=0.0, sync_update=0.5, dispatch=0.25), [2], iterations=10)
    assert row["sync_s_per_it"] == pytest.approx(1.0 + 0.25 + 0.5)
    (slow,) = predict(costs(0.1, 0.1, 0.1, 0.1, update=0.2), [4], iterations=20)
    assert slow["async_s_per_it"] >= 4 * 0.2 - 1e-9, "every update waits for the one driver"


def test_more_rollouts_in_flight_than_one_per_particle_are_discarded_when_stale():
    (row,) = predict(costs(1.0, 1.5), [8], iterations=30, staleness=0)
    assert row["async_discarded"] > 0
    (fresh,) = predict(costs(1.0, 1.5), [2], iterations=30, staleness=0)
    assert fresh["async_discarded"] == 0, "one rollout per particle in flight is never stale"


def test_calibration_reproduces_the_measured_sync_run_and_scales_rollouts_by_the_busy_share():
    base = costs(0.1, 0.2, 0.3, 0.4, sync_update=0.01)
    fitted = calibrate(base, 2, sync_s_per_it=0.9, worker_busy=0.8)
    assert fitted.notes["rollout_scale"] == pytest.approx(0.8 * 0.9 * 2 / 1.0)
    (row,) = predict(fitted, [2])
    assert row["sync_s_per_it"] == pytest.approx(0.9, rel=1e-3) and fitted.dispatch_s > 0
    assert fitted.scaled(particles=6).particles == 6


def test_costs_are_measured_on_the_real_learner_and_environment():
    kwargs = {"step_seconds": 0.002, "min_length": 5, "max_length": 5, "cost": "spin"}
    measured = measure_costs(COSTLY_ENV_ID, kwargs, particles=3, repeats=2, episodes=1)
    assert measured.particles == 3 and all(len(r) == 2 for r in measured.rollouts)
    assert all(t >= 5 * 0.002 for r in measured.rollouts for t in r), "a rollout lasts at least its steps"
    assert 0 < measured.update_s and 0 < measured.sync_update_s
    updates = measure_updates(COSTLY_ENV_ID, kwargs, [2, 16], episodes=1)
    assert set(updates) == {2, 16} and all(one > 0 and every > 0 for one, every in updates.values())
    with pytest.raises(ValueError, match="workers=0"):
        predict(measured, [0])
