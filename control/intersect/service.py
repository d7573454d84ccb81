"""Any backend as an INTERSECT service: ``pfmtwin serve --intersect BROKER --backend URL``.

The service holds one ``control.connect(backend_url)`` microscope (so its limits are enforced
here whatever a client checked) and offers the contract's verbs as the messages of one
capability, ``Microscope`` (:class:`MicroscopeCapability`), with a status message and two
events: ``scan_line`` (each line of a streamed scan, as it arrives) and ``pulse`` (each pulse
emitted). The message bus is MQTT 5 (``intersect-sdk``'s ``mqtt5.0`` control plane), e.g.
Mosquitto on loopback.

Exactly once: every command carries a client-chosen ``request_id``; the service keeps the
answers to the last :data:`REMEMBERED` ids and answers a repeat from that record, so a client
that lost an answer (a broker restart, a timeout) can resend without the command running twice.
Commands run one at a time, in the order they arrive.
"""


import contextlib
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import numpy as np
from intersect_sdk import (
    ControlPlaneConfig,
    HierarchyConfig,
    IntersectBaseCapabilityImplementation,
    IntersectCapabilityError,
    IntersectEventDefinition,
    IntersectService,
    IntersectServiceConfig,
    intersect_message,
    intersect_status,
)

from control.connect import Guarded
from control.contract import ScanSpec
from control.errors import PfmTwinError, TransportError, UrlError
from control.intersect.models import (
    Array,
    BEPSRequest,
    BEPSResponse,
    BERequest,
    BEResponse,
    Clock,
    InfoResponse,
    LineEvent,
    MoveRequest,
    PulseRequest,
    PulseResponse,
    ScanRequest,
    ScanResponse,
    ServiceStatus,
)
from control.spectroscopy import Band, BEPSSpec

CAPABILITY = "Microscope"
#: Answers kept for repeated request ids (a client resends only its latest command).
REMEMBERED = 256

T = TypeVar("T")


class MicroscopeCapability(IntersectBaseCapabilityImplementation):
    """The contract's verbs as INTERSECT messages, on one opened microscope.

    An error of the contract (a limit, a bad argument, an instrument fault) is answered as an
    error message ``"<ErrorClass>: <message>"``, which the ``intersect://`` client raises again
    as the same class.
    """

    intersect_sdk_capability_name = CAPABILITY
    intersect_sdk_events = {
        "scan_line": IntersectEventDefinition(event_type=LineEvent,
                                              event_documentation="one line of a scan requested with stream=true"),
        "pulse": IntersectEventDefinition(event_type=PulseResponse, event_documentation="a pulse the instrument emitted"),
    }

    def __init__(self, scope: Guarded, backend_url: str) -> None:
        super().__init__()
        self._scope = scope
        self._backend_url = backend_url
        self._answers: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._busy = False
        self.commands = 0

    def _once(self, request_id: str, run: Callable[[], T]) -> T:
        """Run a command once per request id; a repeat gets the first answer."""
        with self._lock:
            if request_id in self._answers:
                self._answers.move_to_end(request_id)
                return self._answers[request_id]
            self._busy = True
            try:
                answer = run()
            except PfmTwinError as exc:
                raise IntersectCapabilityError(f"{type(exc).__name__}: {exc}") from None
            finally:
                self._busy = False
            self.commands += 1
            self._answers[request_id] = answer
            while len(self._answers) > REMEMBERED:
                self._answers.popitem(last=False)
            return answer

    @intersect_status()
    def status(self) -> ServiceStatus:
        """The backend served, its clock and whether a command is running."""
        return ServiceStatus(backend=self._scope.info().backend, backend_url=self._backend_url,
                             now=self._scope.now(), commands=self.commands, busy=self._busy)

    @intersect_message()
    def info(self) -> InfoResponse:
        """Identity, versions, hardware spec (SI), the limits in force, options."""
        return InfoResponse.model_validate(self._scope.info().to_dict())

    @intersect_message()
    def now(self) -> Clock:
        """The instrument's clock."""
        return Clock(now=self._scope.now())

    @intersect_message(strict_request_validation=True)
    def move_tip(self, request: MoveRequest) -> Clock:
        """Move the tip; answers the clock after the move."""

        def run() -> Clock:
            self._scope.move_tip(request.x, request.y, speed=request.speed)
            return Clock(now=self._scope.now())

        return self._once(request.request_id, run)

    @intersect_message(strict_request_validation=True)
    def scan(self, request: ScanRequest) -> ScanResponse:
        """Acquire an image; with ``stream`` each line is also emitted as a ``scan_line`` event."""

        def run() -> ScanResponse:
            spec = ScanSpec(center=request.center, size=request.size, pixels=request.pixels,
                            line_rate=request.line_rate, path=request.path, retrace=request.retrace)

            def on_line(index: int, start: float, line: dict[str, np.ndarray]) -> None:
                self.intersect_sdk_emit_event("scan_line", LineEvent(
                    request_id=request.request_id, index=index, start=start,
                    channels={k: Array.of(v) for k, v in line.items()}))

            result = self._scope.scan(spec, on_line=on_line if request.stream else None)
            return ScanResponse(request_id=request.request_id,
                                channels={k: Array.of(v) for k, v in result.channels.items()},
                                x=Array.of(result.x), y=Array.of(result.y), line_times=Array.of(result.line_times))

        return self._once(request.request_id, run)

    @intersect_message(strict_request_validation=True)
    def apply_pulse(self, request: PulseRequest) -> PulseResponse:
        """Emit a bias pulse; answers (and emits as a ``pulse`` event) what the controller emitted."""

        def run() -> PulseResponse:
            record = self._scope.apply_pulse(request.x, request.y, request.amplitude, request.width)
            answer = PulseResponse(request_id=request.request_id, **vars(record))
            self.intersect_sdk_emit_event("pulse", answer)
            return answer

        return self._once(request.request_id, run)


    @intersect_message(strict_request_validation=True)
    def band_excitation(self, request: BERequest) -> BEResponse:
        """One band-excitation read-out (where the backend does band excitation)."""

        def run() -> BEResponse:
            r = self._scope.band_excitation(request.x, request.y, Band(**request.band.model_dump()))
            return BEResponse(request_id=request.request_id, x=r.x, y=r.y, frequencies=Array.of(r.frequencies),
                              response=Array.of(r.response), start=r.start)

        return self._once(request.request_id, run)

    @intersect_message(strict_request_validation=True)
    def beps(self, request: BEPSRequest) -> BEPSResponse:
        """Switching spectroscopy (where the backend does it)."""

        def run() -> BEPSResponse:
            spec = BEPSSpec(points=tuple(request.points), dc=tuple(request.dc), step=request.step,
                            band=Band(**request.band.model_dump()))
            r = self._scope.beps(spec)
            return BEPSResponse(request_id=request.request_id, frequencies=Array.of(r.frequencies),
                                response=Array.of(r.response), times=Array.of(r.times))

        return self._once(request.request_id, run)


def hierarchy_from(text: str) -> HierarchyConfig:
    """``organization.facility.system.subsystem.service`` (subsystem may be ``-``) as a HierarchyConfig.

    Raises:
        ValueError: not five dot-separated parts, or a part the SDK refuses (3-63 lowercase
            letters, digits and single hyphens, starting with a letter).
    """
    parts = text.split(".")
    if len(parts) != 5:
        raise ValueError(f"hierarchy {text!r} must be organization.facility.system.subsystem.service "
                         f"(five parts, subsystem may be '-'), e.g. 'pfmtwin.lab.pfm.-.microscope'")
    organization, facility, system, subsystem, service = parts
    return HierarchyConfig(organization=organization, facility=facility, system=system,
                           subsystem=None if subsystem == "-" else subsystem, service=service)


def harden(planes: Any) -> None:
    """Make the MQTT connections of an SDK control plane fast and able to survive a broker restart.

    Two things the SDK (intersect-sdk 0.9.3) offers no option for, set on the paho client of each
    provider of a ``ControlPlaneManager`` (its private ``_control_providers``; an MQTT provider's
    paho client is its ``_connection``):

    - TCP_NODELAY. paho writes a packet in pieces and never sets it, so Nagle's algorithm holds
      the second piece until the broker's delayed ACK: 43 ms per hop, 88 ms for the smallest
      command's round trip on loopback (about 2 ms with it).
    - Reconnection. On a lost connection the SDK's handler calls ``reconnect()`` at once, inside
      paho's network thread. While the broker is down that raises, and the exception ends the
      thread; once it is back (a service that was busy in a command while the broker restarted)
      it leaves paho's loop in a state where it never connects again. Either way the service
      or client is deaf for good. Here the SDK's handler runs as if a disconnect had been asked
      for (it only marks itself disconnected), and paho's own loop reconnects every 0.25-2 s;
      on reconnecting the SDK subscribes again. ``suppress_exceptions`` keeps any other
      exception of a callback from ending the thread.
    """
    for provider in getattr(planes, "_control_providers", ()):
        paho = getattr(provider, "_connection", None)
        if paho is not None and hasattr(paho, "on_socket_open") and hasattr(provider, "_should_disconnect"):
            paho.on_socket_open = _set_no_delay
            paho.suppress_exceptions = True
            paho.reconnect_delay_set(min_delay=0.25, max_delay=2)
            paho.on_disconnect = _marking_only(provider, paho.on_disconnect)


def _marking_only(provider: Any, handler: Callable[..., None]) -> Callable[..., None]:
    """The SDK's on_disconnect without its reconnect (paho's loop reconnects by itself)."""

    def on_disconnect(*args: Any) -> None:
        asked = provider._should_disconnect
        provider._should_disconnect = True
        try:
            handler(*args)
        finally:
            provider._should_disconnect = asked

    return on_disconnect


def _set_no_delay(client: Any, userdata: Any, sock: Any) -> None:
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def schema(hierarchy: str = "pfmtwin.lab.pfm.-.microscope", capability: str = CAPABILITY) -> dict[str, Any]:
    """The AsyncAPI-like schema the SDK generates from a capability: ``Microscope``
    (:class:`MicroscopeCapability`) or ``Theory`` (``control.intersect.theory.TheoryCapability``).
    ``docs/intersect/<capability>-schema.json`` holds the checked-in copies."""
    from intersect_sdk import get_schema_from_capability_implementations

    if capability == CAPABILITY:
        implementation = MicroscopeCapability
    else:
        from control.intersect.theory import THEORY, TheoryCapability

        if capability != THEORY:
            raise ValueError(f"capability {capability!r} is not served here; 'Microscope' or 'Theory'")
        implementation = TheoryCapability
    return get_schema_from_capability_implementations([implementation], hierarchy_from(hierarchy))


def make_service(scope: Guarded | None, backend_url: str, broker: ControlPlaneConfig, hierarchy: HierarchyConfig,
                 extra: list[IntersectBaseCapabilityImplementation] | None = None) -> IntersectService:
    """An IntersectService offering ``scope`` (if any) and ``extra`` capabilities (call ``startup()`` / ``shutdown()``)."""
    capabilities = [MicroscopeCapability(scope, backend_url)] if scope is not None else []
    config = IntersectServiceConfig(hierarchy=hierarchy, brokers=[broker], status_interval=30.0)
    service = IntersectService([*capabilities, *(extra or [])], config)
    harden(service._control_plane_manager)  # noqa: SLF001 - see harden
    return service


def stop_service(service: IntersectService, timeout: float = 5.0) -> None:
    """``service.shutdown()``, waited for at most ``timeout`` s (the SDK's waits on its own threads)."""
    stopper = threading.Thread(target=service.shutdown, kwargs={"reason": "stopped"}, daemon=True)
    stopper.start()
    stopper.join(timeout)


def broker_config(url: str) -> ControlPlaneConfig:
    """``mqtt://[USER:PASSWORD@]HOST:PORT`` as the SDK's ControlPlaneConfig (MQTT 5).

    Raises:
        UrlError: another form; the message shows the accepted one.
    """
    parts = urlsplit(url)
    if parts.scheme != "mqtt" or not parts.hostname or parts.port is None or parts.path not in ("", "/") or parts.query:
        raise UrlError(f"broker {url!r} must be mqtt://[USER:PASSWORD@]HOST:PORT (an MQTT 5 broker such as "
                       "Mosquitto), e.g. mqtt://127.0.0.1:1883")
    return ControlPlaneConfig(protocol="mqtt5.0", host=parts.hostname, port=parts.port,
                              username=unquote(parts.username or "pfmtwin"), password=unquote(parts.password or "pfmtwin"))


@dataclass
class OnTheBus:
    """A running service (:func:`on_the_bus`): its ``intersect://`` URL and its capabilities."""

    url: str
    service: IntersectService
    microscope: MicroscopeCapability | None
    theory: IntersectBaseCapabilityImplementation | None

    @property
    def commands(self) -> int:
        """Commands run by the microscope plus predictions answered by the theory."""
        return (self.microscope.commands if self.microscope else 0) + (self.theory.requests if self.theory else 0)


@contextlib.contextmanager
def on_the_bus(broker_url: str, hierarchy: str, *, backend: str | None = None,
               theory: str | None = None) -> Iterator[OnTheBus]:
    """Offer ``backend`` (capability Microscope) and/or ``theory`` (capability Theory, a twin:// URL)
    as one service on the broker; on leaving, stop the service (bounded) and close the microscope.

    Raises:
        UrlError: a bad broker URL, hierarchy or theory URL.
        TransportError: the broker cannot be reached.
    """
    import control

    config = broker_config(broker_url)
    try:
        parsed = hierarchy_from(hierarchy)
    except ValueError as exc:
        raise UrlError(f"hierarchy: {exc}") from None
    extra: list[IntersectBaseCapabilityImplementation] = []
    if theory is not None:
        from control.intersect.theory import TheoryCapability

        try:
            extra.append(TheoryCapability(theory))
        except ValueError as exc:
            raise UrlError(f"theory: {exc}") from None
    scope = control.connect(backend) if backend is not None else None
    service = None
    try:
        service = make_service(scope, backend or "", config, parsed, extra)
        service.startup()
        if not service.is_connected():
            raise TransportError(f"cannot reach the MQTT broker at {config.host}:{config.port}; start it "
                                 "(e.g. mosquitto -p PORT) or let pfmtwin start one (--intersect local)")
        microscope = next((c for c in service.capabilities if isinstance(c, MicroscopeCapability)), None)
        yield OnTheBus(f"intersect://{config.host}:{config.port}/{hierarchy}", service, microscope,
                       extra[0] if extra else None)
    finally:
        if service is not None:
            stop_service(service)
        if scope is not None:
            scope.close()
