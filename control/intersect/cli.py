"""``pfmtwin serve --intersect BROKER --backend URL``: a microscope on an INTERSECT bus until SIGTERM or Ctrl-C.

Prints ``{"listening": "intersect://HOST:PORT/HIERARCHY"}`` once the service is on the bus (the
URL ``control.connect`` takes), and its statistics as JSON on stderr when it stops.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from urllib.parse import unquote, urlsplit

from control.errors import UrlError

DEFAULT_HIERARCHY = "pfmtwin.lab.pfm.-.microscope"


def broker_config(url: str):
    """``mqtt://[USER:PASSWORD@]HOST:PORT`` as the SDK's ControlPlaneConfig (MQTT 5)."""
    from intersect_sdk import ControlPlaneConfig

    parts = urlsplit(url)
    if parts.scheme != "mqtt" or not parts.hostname or parts.port is None or parts.path not in ("", "/") or parts.query:
        raise UrlError(f"--intersect {url!r} must be mqtt://[USER:PASSWORD@]HOST:PORT (an MQTT 5 broker such as "
                       "Mosquitto), e.g. mqtt://127.0.0.1:1883, or 'local' to start a Mosquitto here")
    return ControlPlaneConfig(protocol="mqtt5.0", host=parts.hostname, port=parts.port,
                              username=unquote(parts.username or "pfmtwin"), password=unquote(parts.password or "pfmtwin"))


def _serve(args) -> int:
    import control
    from control.intersect.broker import Mosquitto
    from control.intersect.service import hierarchy_from, make_service, schema, stop_service

    if args.schema:
        print(json.dumps(schema(args.hierarchy, args.schema), indent=2, sort_keys=True))
        return 0
    if not args.intersect or not (args.backend or args.theory):
        raise UrlError("pfmtwin serve needs --intersect BROKER and --backend URL and/or --theory URL "
                       "(or --schema to print the interface)")
    try:
        hierarchy = hierarchy_from(args.hierarchy)
    except ValueError as exc:
        raise UrlError(f"--hierarchy: {exc}") from None
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    broker = Mosquitto() if args.intersect == "local" else None
    service = scope = None
    try:
        config = broker_config(broker.url if broker else args.intersect)
        extra = []
        if args.theory:
            from control.intersect.theory import TheoryCapability

            try:
                extra.append(TheoryCapability(args.theory))
            except ValueError as exc:
                raise UrlError(f"--theory: {exc}") from None
        scope = control.connect(args.backend) if args.backend else None
        service = make_service(scope, args.backend or "", config, hierarchy, extra)
        service.startup()
        if not service.is_connected():
            raise control.TransportError(f"cannot reach the MQTT broker at {config.host}:{config.port}; start it "
                                         "(e.g. mosquitto -p PORT) or pass --intersect local")
        print(json.dumps({"listening": f"intersect://{config.host}:{config.port}/{args.hierarchy}"}), flush=True)
        stop.wait()
    finally:
        commands = sum(getattr(c, "commands", getattr(c, "requests", 0)) for c in service.capabilities[1:]) \
            if service is not None else 0
        if service is not None:
            stop_service(service)
        if scope is not None:
            scope.close()
        if broker is not None:
            broker.stop()
        print(json.dumps({"commands": commands}), file=sys.stderr, flush=True)
    return 0


def register(subparsers) -> None:
    s = subparsers.add_parser("serve", help="offer a backend as an INTERSECT service on an MQTT 5 broker")
    s.add_argument("--intersect", metavar="BROKER",
                   help="mqtt://[USER:PASSWORD@]HOST:PORT of the broker, or 'local' to start a Mosquitto on loopback")
    s.add_argument("--backend", metavar="URL", help="the backend to serve, e.g. 'twin://?seed=7'")
    s.add_argument("--hierarchy", default=DEFAULT_HIERARCHY,
                   help=f"organization.facility.system.subsystem.service ('-' for no subsystem; default {DEFAULT_HIERARCHY})")
    s.add_argument("--theory", metavar="URL",
                   help="also (or only) serve the twin's physics as theory (capability Theory), with these "
                        "options, e.g. 'twin://?seed=3&grid=64&noise=0&scanner=closed'")
    s.add_argument("--schema", nargs="?", const="Microscope", choices=("Microscope", "Theory"), default=None,
                   help="print a capability's AsyncAPI schema (as the SDK generates it; default Microscope) and exit")
    s.set_defaults(func=_serve)
