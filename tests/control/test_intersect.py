"""The microscope as an INTERSECT service on a real Mosquitto broker: the CLI door, exactly once,
limits on both sides, faults (no broker, no service, a broker restart) and the published schema."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest

import control
from control import LimitError, ScanSpec, TransportError, UrlError

from ..conftest import _started_by_tests, descendants

OPTIONS = "seed=5&grid=64&field=5e-7&init=wall&scanner=closed"
TWIN = "twin://?" + OPTIONS
SPEC = ScanSpec(center=(0.25e-6, 0.25e-6), size=(0.4e-6, 0.4e-6), pixels=(32, 16), line_rate=2.0)
SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "intersect"


def session(url: str):
    with control.connect(url) as scope:
        first = scope.scan(SPEC)
        record = scope.apply_pulse(0.2e-6, 0.25e-6, 7.74, 0.25e-3)
        second = scope.scan(SPEC)
        return first, record, second, scope.now()


def test_pfmtwin_serve_offers_the_twin_bit_for_bit_and_leaves_nothing_running(mosquitto):

    from control.served import Served

    with Served("serve", "--intersect", mosquitto.url, "--backend", TWIN,
                "--hierarchy", "pfmtwin.tests.pfm.-.served-scope") as served:
        assert served.url == f"intersect://127.0.0.1:{mosquitto.port}/pfmtwin.tests.pfm.-.served-scope"
        over_the_bus = session(served.url)
        pid = served.proc.pid
    in_process = session(TWIN)
    assert over_the_bus[1] == in_process[1] and over_the_bus[3] == in_process[3]
    for a, b in ((over_the_bus[0], in_process[0]), (over_the_bus[2], in_process[2])):
        for name in a.channels:
            assert a.channels[name].tobytes() == b.channels[name].tobytes()
    assert not np.array_equal(over_the_bus[0].phase, over_the_bus[2].phase), "the pulse wrote a domain"
    assert served.stats == {"commands": 3}
    assert not descendants(pid) and not set(_started_by_tests()) - {mosquitto._process.pid}


def test_a_resent_command_runs_once(intersect_services):
    from control.intersect.models import PulseRequest, PulseResponse

    served = intersect_services(TWIN)
    with control.connect(served.url) as scope:
        backend = scope._backend  # the intersect:// client under the guard
        request = PulseRequest(request_id="resent-1", x=0.2e-6, y=0.25e-6, amplitude=7.74, width=0.25e-3)
        first = PulseResponse.model_validate_json(backend._call("apply_pulse", request, 0.0))
        after_first = scope.now()
        again = PulseResponse.model_validate_json(backend._call("apply_pulse", request, 0.0))
        assert again == first, "a repeated id is answered from the record"
        assert scope.now() == after_first, "and nothing ran: the clock did not move"
        assert served.capability.commands == 1
        other = request.model_copy(update={"request_id": "resent-2"})
        assert PulseResponse.model_validate_json(backend._call("apply_pulse", other, 0.0)).start > first.start


def test_the_service_enforces_its_own_limits(intersect_services):
    """A client that skips its guard (or another SDK client) is refused by the service's, and nothing runs."""
    from control.intersect.models import PulseRequest

    served = intersect_services(TWIN)
    with control.connect(served.url) as scope:
        before = scope.now()
        bad = PulseRequest(request_id="unsafe", x=0.2e-6, y=0.25e-6, amplitude=10.5, width=1e-3)
        with pytest.raises(LimitError, match=r"amplitude=10\.5 V exceeds the bias limit"):
            scope._backend._call("apply_pulse", bad, 0.0)
        assert scope.now() == before and served.capability.commands == 0


def test_scan_lines_travel_as_events_as_they_arrive(intersect_services, monkeypatch):
    from control.intersect.client import IntersectMicroscope

    events = []
    original = IntersectMicroscope._on_line

    def counting(self, payload, content_type, headers):
        events.append(json.loads(payload)["index"])
        original(self, payload, content_type, headers)

    monkeypatch.setattr(IntersectMicroscope, "_on_line", counting)
    served = intersect_services(TWIN)
    seen = []
    with control.connect(served.url) as scope:
        result = scope.scan(SPEC, on_line=lambda i, t, ch: seen.append((i, t, ch["phase"].copy())))
        scope.scan(SPEC)  # a scan nobody streams emits no line events
    assert sorted(events) == list(range(16)), "every line came as a scan_line event"
    assert [i for i, _, _ in seen] == list(range(16))
    for i, t, phase in seen:
        assert t == result.line_times[i] and phase.tobytes() == result.phase[i].tobytes()


def test_no_broker_and_no_service_are_clear_errors(intersect_services, mosquitto):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    with pytest.raises(TransportError, match=rf"cannot reach the INTERSECT broker at 127\.0\.0\.1:{free}"):
        control.connect(f"intersect://127.0.0.1:{free}/pfmtwin.tests.pfm.-.nobody?timeout=0.3&retries=0")
    with pytest.raises(TransportError, match=r"no answer from the INTERSECT service pfmtwin\.tests\.pfm\.-\.nobody"):
        control.connect(f"intersect://127.0.0.1:{mosquitto.port}/pfmtwin.tests.pfm.-.nobody?timeout=0.3&retries=1")

    served = intersect_services(TWIN)
    with control.connect(served.url + "?timeout=0.3&retries=1") as scope:
        scope.now()
        served.stop()  # the service goes away between commands
        with pytest.raises(TransportError, match="the command may have run once"):
            scope.apply_pulse(0.2e-6, 0.25e-6, 5.0, 1e-3)


def test_a_broker_restart_loses_no_command_and_runs_none_twice(intersect_services):
    from control.intersect.broker import Mosquitto

    with Mosquitto() as broker:
        from ..conftest import OnTheBus

        served = OnTheBus(TWIN, broker)
        try:
            with control.connect(served.url + "?timeout=2&retries=5") as scope:
                before = scope.now()
                broker.restart()
                record = scope.apply_pulse(0.2e-6, 0.25e-6, 5.0, 1e-3)
                assert record.start > before and served.capability.commands == 1
                assert scope.scan(SPEC).phase.shape == (16, 32)
        finally:
            served.stop()


@pytest.mark.parametrize(("url", "match"), [
    ("intersect://127.0.0.1/pfmtwin.lab.pfm.-.microscope", "is not intersect://HOST:PORT/"),
    ("intersect://127.0.0.1:1883/pfmtwin.lab.microscope", "five parts"),
    ("intersect://127.0.0.1:1883/pfmtwin.lab.pfm.-.Microscope", "Microscope"),
    ("intersect://127.0.0.1:1883/pfmtwin.lab.pfm.-.microscope?timeout=-1", "option timeout='-1'"),
    ("intersect://127.0.0.1:1883/pfmtwin.lab.pfm.-.microscope?qos=2", "unknown option"),
])
def test_bad_urls_say_what_is_accepted(url, match):
    with pytest.raises(UrlError, match=match):
        control.connect(url)


@pytest.mark.parametrize(("capability", "hierarchy", "endpoints", "events"), [
    ("Microscope", "pfmtwin.lab.pfm.-.microscope",
     {"info", "now", "move_tip", "scan", "apply_pulse", "band_excitation", "beps"}, {"scan_line", "pulse"}),
    ("Theory", "pfmtwin.lab.theory.-.twin-physics", {"predict"}, set()),
])
def test_the_checked_in_schemas_are_the_capabilities(capability, hierarchy, endpoints, events):
    """docs/intersect/<capability>-schema.json is what the SDK generates from the capability; after a
    change of the messages, regenerate it with `pfmtwin serve --schema <capability> [--hierarchy H] > ...`."""
    from control.intersect.service import schema

    checked_in = json.loads((SCHEMAS / f"{capability}-schema.json").read_text())
    assert checked_in == json.loads(json.dumps(schema(hierarchy, capability))), f"regenerate {capability}-schema.json"
    assert set(checked_in["capabilities"][capability]["endpoints"]) == endpoints
    assert set(checked_in["capabilities"][capability]["events"]) == events


def test_theory_predicts_the_direction_and_size_of_a_written_domain(mosquitto):
    """The Theory capability on the bus: a film built from the observed image, a pulse on each side
    of its wall. A negative tip bias writes up (+P) domains: the up domain on the left grows and
    the wall moves right; a positive one moves it left. The sample here is the theory's own
    physics without noise, so the predicted shift near the pulse matches the measured one."""
    from control.analysis import trace_wall
    from control.intersect.service import on_the_bus
    from control.intersect.theory import TheoryClient

    theory = "twin://?seed=5&grid=64&noise=0&scanner=closed&texture=0"
    sample = "twin://?seed=5&grid=64&field=4e-7&init=wall&noise=0&scanner=closed&texture=0"
    spec = ScanSpec(center=(0.2e-6, 0.2e-6), size=(0.4e-6, 0.4e-6), pixels=(64, 64), line_rate=5.0)
    with on_the_bus(mosquitto.url, "pfmtwin.tests.theory.-.physics", theory=theory) as served, \
            control.connect(sample) as scope, TheoryClient(served.url) as oracle:
        observed = scope.scan(spec)
        wall = trace_wall(observed)
        up = float(np.median(observed.phase[:, :4]))  # the twin's wall film: up on the left
        i = 32
        x, y = float(wall.x[i]), float(wall.y[i])
        answer = oracle.predict(observed, [(x + 20e-9, y, -8.0, 1e-3), (x - 20e-9, y, 8.0, 1e-3)], up)
        assert len(answer.predictions) == 2 and answer.seconds > 0
        right, left = (p.wall_x.to_numpy()[i] - x for p in answer.predictions)
        assert right > 20e-9 and left < -20e-9, (right, left)
        assert all(p.written_area > 1e-15 for p in answer.predictions), "each wrote over 1000 nm^2"
        scope.apply_pulse(x + 20e-9, y, -8.0, 1e-3)
        measured = trace_wall(scope.scan(spec)).x[i] - x
        assert abs(measured - right) < 0.5 * abs(measured), (measured, right)
        assert served.commands == 1, "one prediction request answered"


def test_a_theory_url_that_sets_what_the_image_sets_is_refused():
    from control.intersect.theory import TheoryCapability

    with pytest.raises(ValueError, match="leave out init= and field="):
        TheoryCapability("twin://?seed=3&init=wall")
    with pytest.raises(ValueError, match="must be a twin:// URL"):
        TheoryCapability("surrogate://model.pt")


SLOW = ScanSpec(center=(0.25e-6, 0.25e-6), size=(0.4e-6, 0.4e-6), pixels=(16, 8), line_rate=6.0)  # 1.3 s real time


def test_a_broker_restart_during_a_command_loses_its_answer_not_the_command(emulators):
    """The service finishes a real-time scan while the broker is down, so its answer is lost; the
    client resends the same request after reconnecting and gets the answer from the record: the
    scan ran once."""
    import threading

    from control.intersect.broker import Mosquitto

    from ..conftest import OnTheBus

    emulator = emulators(OPTIONS, speed=1.0)
    with Mosquitto() as broker:
        served = OnTheBus(emulator.url, broker)
        try:
            with control.connect(served.url + "?timeout=2&retries=5") as scope:
                restarter = threading.Timer(0.5, broker.restart)
                restarter.start()
                try:
                    result = scope.scan(SLOW)
                finally:
                    restarter.join()
                assert result.phase.shape == (8, 16)
                assert served.capability.commands == 1, "the resend was answered, not run"
                assert scope.scan(SLOW).line_times[0] > result.line_times[-1]
        finally:
            served.stop()


def test_a_service_killed_mid_command_is_a_clear_error_and_nothing_hangs(mosquitto, emulators):
    import signal
    import threading

    from control.served import Served

    emulator = emulators(OPTIONS, speed=1.0)
    served = Served("serve", "--intersect", mosquitto.url, "--backend", emulator.url,
                    "--hierarchy", "pfmtwin.tests.pfm.-.doomed")
    try:
        with control.connect(served.url + "?timeout=0.5&retries=1") as scope:
            killer = threading.Timer(0.5, served.proc.send_signal, (signal.SIGKILL,))
            killer.start()
            try:
                with pytest.raises(TransportError, match="may have run once"):
                    scope.scan(SLOW)
            finally:
                killer.join()
    finally:
        served.stop()
    assert served.proc.poll() is not None


def test_a_slow_consumer_of_lines_gets_every_line_in_order_while_others_are_served(intersect_services):
    import threading
    import time

    served = intersect_services(TWIN)
    seen, results, clocks = [], [], []

    def slowly(i, t, channels):
        seen.append(i)
        time.sleep(0.05)

    with control.connect(served.url) as slow, control.connect(served.url) as other:
        reader = threading.Thread(target=lambda: results.append(slow.scan(SPEC, on_line=slowly)))
        reader.start()
        while reader.is_alive():
            clocks.append(other.now())  # another client is answered meanwhile
        reader.join()
    assert seen == list(range(16)) and len(results) == 1
    assert clocks, "the other client was answered while the slow one read its lines"
