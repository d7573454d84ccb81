"""``intersect://HOST:PORT/ORG.FACILITY.SYSTEM.SUBSYSTEM.SERVICE``: a microscope served on an INTERSECT bus.

The backend behind ``control.connect("intersect://...")``: every script, agent and the CLI run
unchanged against a microscope offered by ``pfmtwin serve --intersect`` (:mod:`control.intersect.service`).

It speaks the SDK's own message format (``intersect_sdk_common``'s control plane and userspace
headers, MQTT 5) but not through ``intersect_sdk.IntersectClient``: that class is built for a
script whose whole life is its callback loop. It sleeps 1 s on start-up, and answers a malformed
message by sending SIGTERM to its own process, which a backend inside someone's program must
never do. Here a command is a blocking call: publish the request, wait for the answer with the
same request id, resend the same request (same id, so the service answers it from its record and
does not run it twice) if none comes within ``timeout``, and raise :class:`TransportError` after
``retries`` resends. Lines of a scan arrive as ``scan_line`` events and are handed to ``on_line``
in the caller's thread; any the bus lost are filled in from the answer, so each line is handed
over once and in order.

Options: ``timeout`` (s to wait for an answer beyond the command's own duration, default 10),
``retries`` (resends, default 3), ``user``/``password`` (broker credentials; Mosquitto on
loopback accepts any).
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from typing import Any

import numpy as np
from intersect_sdk import ControlPlaneConfig, HierarchyConfig, IntersectDataHandler
from intersect_sdk_common import ControlPlaneManager
from intersect_sdk_common.control_plane.messages.event import validate_event_message_headers
from intersect_sdk_common.control_plane.messages.userspace import (
    create_userspace_message_headers,
    validate_userspace_message_headers,
)
from pydantic import BaseModel, ValidationError

from control import errors
from control.contract import InstrumentInfo, LineCallback, PulseRecord, ScanResult, ScanSpec
from control.errors import InstrumentError, TransportError, UrlError
from control.hardware import HardwareSpec
from control.intersect.models import (
    BandModel,
    BEPSRequest,
    BEPSResponse,
    BERequest,
    BEResponse,
    Clock,
    LineEvent,
    MoveRequest,
    PulseRequest,
    PulseResponse,
    ScanRequest,
    ScanResponse,
)
from control.intersect.service import CAPABILITY, harden, hierarchy_from
from control.limits import SafetyLimits
from control.spectroscopy import Band, BEPSResult, BEPSSpec, BEResult
from control.urls import Option, number_in, options, split


def _bounded(low: float, high: float, integral: bool = False):
    def convert(text: str) -> float | int:
        value = number_in(text, low, high)
        if value is None or (integral and value != int(value)):
            raise ValueError(f"not a {'whole ' if integral else ''}number in ({low:g}, {high:g}]")
        return int(value) if integral else value

    return convert


OPTIONS = {
    "timeout": Option(_bounded(0.0, 3600.0), 10.0, "s to wait for an answer beyond the command's duration", "s"),
    "retries": Option(_bounded(-1, 100, integral=True), 3, "resends of an unanswered command"),
    "user": Option(str, "pfmtwin", "broker user name"),
    "password": Option(str, "pfmtwin", "broker password"),
}
#: The contract's errors, by name, as the service reports them ("LimitError: ...").
_ERRORS = {cls.__name__: cls for cls in (errors.LimitError, errors.InvalidArgumentError, errors.InstrumentError,
                                         errors.UrlError, errors.TransportError)}
#: Longest a connection attempt to the broker may take, s.
CONNECT_TIMEOUT = 10.0


def parse_intersect_url(url: str) -> tuple[str, int, HierarchyConfig, dict[str, Any]]:
    """(host, port, the service's hierarchy, options) of an ``intersect://`` URL."""
    scheme, address, raw = split(url)
    host_port, _, path = address.partition("/")
    host, _, port = host_port.rpartition(":")
    if scheme != "intersect" or not host or not port.isdigit() or not path:
        raise UrlError(f"{url!r} is not intersect://HOST:PORT/ORGANIZATION.FACILITY.SYSTEM.SUBSYSTEM.SERVICE, "
                       f"e.g. 'intersect://127.0.0.1:1883/pfmtwin.lab.pfm.-.microscope'")
    try:
        hierarchy = hierarchy_from(path)
    except (ValueError, ValidationError) as exc:
        raise UrlError(f"{url!r}: {exc}") from None
    return host, int(port), hierarchy, options(url, raw, OPTIONS)


class _Answer:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.error = False
        self.payload: Any = None


class IntersectCaller:
    """Commands to one capability of an INTERSECT service: connect, call and resend, close."""

    def __init__(self, url: str, capability: str, *, events: tuple[str, ...] = ()) -> None:
        host, port, service, opts = parse_intersect_url(url)
        self.url = url
        self.capability = capability
        self.timeout = float(opts["timeout"])
        self.retries = int(opts["retries"])
        self._service = service.hierarchy_string(".")
        self._me = HierarchyConfig(organization=service.organization, facility=service.facility,
                                   system=service.system, service=f"tmp-{uuid.uuid4()}")
        self._campaign = uuid.uuid4()
        self._pending: dict[str, _Answer] = {}
        self._lines: dict[str, queue.SimpleQueue] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._broker = f"{host}:{port}"
        self._planes = ControlPlaneManager(control_configs=[ControlPlaneConfig(
            protocol="mqtt5.0", host=host, port=port, username=str(opts["user"]), password=str(opts["password"]))])
        self._planes.add_subscription_channel(f"{self._me.hierarchy_string('/')}/response", {self._on_response},
                                              persist=True, queue_name=self._me.service)
        for event in events:
            self._planes.add_subscription_channel(f"{service.hierarchy_string('/')}/events/{capability}/{event}",
                                                  {self._on_line}, persist=True, queue_name=self._me.service)
        harden(self._planes)
        self._connect()

    # -- the bus --------------------------------------------------------------------------------

    def _connect(self) -> None:
        done = threading.Event()
        failure: list[BaseException] = []

        def attempt() -> None:
            try:
                self._planes.connect()
            except BaseException as exc:  # noqa: BLE001 - reported below, in the caller's thread
                failure.append(exc)
            finally:
                done.set()

        threading.Thread(target=attempt, name="intersect-connect", daemon=True).start()
        if not done.wait(CONNECT_TIMEOUT) or failure or not self._planes.is_connected():
            why = f"{type(failure[0]).__name__}: {failure[0]}" if failure else f"no answer in {CONNECT_TIMEOUT} s"
            self._disconnect()
            raise TransportError(
                f"cannot reach the INTERSECT broker at {self._broker} for {self.url!r} ({why}); "
                "start the broker (e.g. mosquitto -p PORT) and the service (pfmtwin serve --intersect ...)"
            )

    def _disconnect(self) -> None:
        """Leave the broker; paho's loop thread is stopped in a daemon thread, waited for at most 5 s."""
        stopper = threading.Thread(target=self._planes.disconnect, name="intersect-disconnect", daemon=True)
        stopper.start()
        stopper.join(5.0)

    def _on_response(self, payload: bytes, content_type: str, raw_headers: dict[str, str]) -> None:
        try:
            headers = validate_userspace_message_headers(raw_headers)
        except ValidationError:
            return  # not a message of this protocol: ignore, never kill anything
        with self._lock:
            answer = self._pending.get(str(headers.request_id))
        if answer is None or answer.done.is_set():
            return  # the answer to a resend already answered
        answer.error = bool(headers.has_error)
        answer.payload = payload
        answer.done.set()

    def _on_line(self, payload: bytes, content_type: str, raw_headers: dict[str, str]) -> None:
        try:
            validate_event_message_headers(raw_headers)
            event = LineEvent.model_validate_json(payload)
        except ValidationError:
            return
        with self._lock:
            lines = self._lines.get(event.request_id)
        if lines is not None:
            lines.put(event)

    def _call(self, operation: str, request: BaseModel | None, duration: float,
              on_line: LineCallback | None = None, lines: int = 0) -> Any:
        """Send one command; return its decoded JSON answer (resends as needed)."""
        if self._closed:
            raise InstrumentError(f"the connection to {self.url!r} is closed; open a new one with control.connect(url)")
        header_id = uuid.uuid4()
        answer = _Answer()
        command_id = getattr(request, "request_id", None)
        streamed: queue.SimpleQueue | None = queue.SimpleQueue() if on_line is not None else None
        with self._lock:
            self._pending[str(header_id)] = answer
            if streamed is not None:
                self._lines[command_id] = streamed
        body = b"null" if request is None else request.model_dump_json().encode()
        headers = create_userspace_message_headers(
            source=self._me.hierarchy_string("."), destination=self._service,
            operation_id=f"{self.capability}.{operation}", data_handler=IntersectDataHandler.MESSAGE,
            campaign_id=self._campaign, request_id=header_id)
        handed, early = 0, {}
        try:
            for attempt in range(self.retries + 1):
                self._planes.publish_message(f"{self._service.replace('.', '/')}/request", body, "application/json",
                                             headers, persist=True)
                deadline = time.monotonic() + self.timeout + duration
                while not answer.done.is_set() and time.monotonic() < deadline:
                    if streamed is not None:
                        handed = self._hand_lines(streamed, early, handed, on_line, timeout=0.01)
                    else:
                        answer.done.wait(min(0.05, max(deadline - time.monotonic(), 0.0)))
                if answer.done.is_set():
                    break
            else:
                maybe = "the command may have run once: check the instrument (now(), a scan) before re-issuing it; " \
                    if request is not None else ""
                raise TransportError(
                    f"no answer from the INTERSECT service {self._service} on {self._broker} to {operation} after "
                    f"{self.retries + 1} attempt(s) of {self.timeout + duration:.3g} s; {maybe}check that the service "
                    "(pfmtwin serve --intersect) and the broker are running"
                )
        finally:
            with self._lock:
                self._pending.pop(str(header_id), None)
                if command_id is not None:
                    self._lines.pop(command_id, None)
        if answer.error:
            self._raise(operation, answer.payload)
        value = answer.payload if isinstance(answer.payload, bytes) else bytes(answer.payload)
        if streamed is not None:
            self._hand_lines(streamed, early, handed, on_line, timeout=0.0)
        return value

    @staticmethod
    def _hand_lines(lines: queue.SimpleQueue, early: dict[int, LineEvent], handed: int, on_line: LineCallback,
                    timeout: float) -> int:
        """Hand ``on_line`` the lines that have arrived, in order from line ``handed`` (``early``: those
        that came before their predecessors); return the next index to hand."""
        try:
            while True:
                event = lines.get(timeout=timeout) if timeout else lines.get_nowait()
                early[event.index] = event
                timeout = 0.0
        except queue.Empty:
            pass
        while handed in early:
            event = early.pop(handed)
            on_line(event.index, event.start, {k: v.to_numpy() for k, v in event.channels.items()})
            handed += 1
        return handed

    def _raise(self, operation: str, payload: bytes) -> None:
        text = payload.decode(errors="replace")
        detail = text.split("\n", 1)[1] if "\n" in text else text
        name, sep, message = detail.partition(": ")
        if sep and name in _ERRORS:
            raise _ERRORS[name](message)
        raise InstrumentError(f"the INTERSECT service {self._service} refused {operation}: {text.strip()}")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._disconnect()


class IntersectMicroscope(IntersectCaller):
    """A ``control.Backend`` that sends each command to an INTERSECT microscope service."""

    def __init__(self, url: str) -> None:
        super().__init__(url, CAPABILITY, events=("scan_line",))
        try:
            self._info = self._info_from(self._call("info", None, 0.0))
        except Exception:
            self.close()
            raise

    def _info_from(self, raw: bytes) -> InstrumentInfo:
        d = json.loads(raw)
        return InstrumentInfo(
            backend=d["backend"], url=self.url, identity=f"{d['identity']} via INTERSECT {self._service}",
            protocol_version=d["protocol_version"], software_version=d["software_version"],
            hardware=HardwareSpec.from_dict(d["hardware"]), limits=SafetyLimits.from_dict(d["limits"]),
            options={**d.get("options", {}), "served": d["url"]}, option_units=d.get("option_units", {}))

    def info(self) -> InstrumentInfo:
        return self._info

    def now(self) -> float:
        return Clock.model_validate_json(self._call("now", None, 0.0)).now

    def move_tip(self, x: float, y: float, speed: float) -> None:
        self._call("move_tip", MoveRequest(request_id=str(uuid.uuid4()), x=x, y=y, speed=speed), 0.0)

    def scan(self, spec: ScanSpec, on_line: LineCallback | None = None) -> ScanResult:
        request = ScanRequest(request_id=str(uuid.uuid4()), center=spec.center, size=spec.size, pixels=spec.pixels,
                              line_rate=spec.line_rate, path=spec.path, retrace=spec.retrace, stream=on_line is not None)
        handed = [0]

        def counting(index: int, start: float, line: dict[str, np.ndarray]) -> None:
            handed[0] = index + 1
            on_line(index, start, line)

        raw = self._call("scan", request, spec.duration, counting if on_line is not None else None, spec.shape[0])
        answer = ScanResponse.model_validate_json(raw)
        channels = {k: v.to_numpy() for k, v in answer.channels.items()}
        result = ScanResult(spec=spec, channels=channels, x=answer.x.to_numpy(), y=answer.y.to_numpy(),
                            line_times=answer.line_times.to_numpy())
        if on_line is not None:  # lines the bus did not bring, from the answer
            for i in range(handed[0], spec.shape[0]):
                on_line(i, float(result.line_times[i]), {k: v[i] for k, v in channels.items()})
        return result

    def apply_pulse(self, x: float, y: float, amplitude: float, width: float) -> PulseRecord:
        raw = self._call("apply_pulse", PulseRequest(request_id=str(uuid.uuid4()), x=x, y=y, amplitude=amplitude,
                                                     width=width), width)
        answer = PulseResponse.model_validate_json(raw)
        return PulseRecord(**answer.model_dump(exclude={"request_id"}))

    def band_excitation(self, x: float, y: float, band: Band) -> BEResult:
        raw = self._call("band_excitation", BERequest(request_id=str(uuid.uuid4()), x=x, y=y, band=_band(band)),
                         band.duration)
        a = BEResponse.model_validate_json(raw)
        return BEResult(x=a.x, y=a.y, band=band, frequencies=a.frequencies.to_numpy(), response=a.response.to_numpy(),
                        start=a.start)

    def beps(self, spec: BEPSSpec) -> BEPSResult:
        request = BEPSRequest(request_id=str(uuid.uuid4()), points=list(spec.points), dc=list(spec.dc), step=spec.step,
                              band=_band(spec.band))
        a = BEPSResponse.model_validate_json(self._call("beps", request, spec.duration))
        return BEPSResult(spec=spec, frequencies=a.frequencies.to_numpy(), response=a.response.to_numpy(),
                          times=a.times.to_numpy())


def _band(band: Band) -> BandModel:
    return BandModel(center=band.center, width=band.width, amplitude=band.amplitude, duration=band.duration,
                     bins=band.bins)


def open_intersect(url: str) -> IntersectMicroscope:
    """The ``pfmtwin.backends`` opener of ``intersect://`` URLs."""
    return IntersectMicroscope(url)
