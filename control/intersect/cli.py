"""``pfmtwin serve --intersect BROKER --backend URL``: a microscope on an INTERSECT bus until SIGTERM or Ctrl-C.

Prints ``{"listening": "intersect://HOST:PORT/HIERARCHY"}`` once the service is on the bus (the
URL ``control.connect`` takes), and its statistics as JSON on stderr when it stops.
"""

from __future__ import annotations

import json
import signal
import sys
import threading

from control.errors import UrlError

DEFAULT_HIERARCHY = "pfmtwin.lab.pfm.-.microscope"


def _serve(args) -> int:
    from control.intersect.broker import Mosquitto
    from control.intersect.service import on_the_bus, schema

    if args.schema:
        print(json.dumps(schema(args.hierarchy, args.schema), indent=2, sort_keys=True))
        return 0
    if not args.intersect or not (args.backend or args.theory):
        raise UrlError("pfmtwin serve needs --intersect BROKER and --backend URL and/or --theory URL "
                       "(or --schema to print the interface)")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    broker = Mosquitto() if args.intersect == "local" else None
    served = None
    try:
        with on_the_bus(broker.url if broker else args.intersect, args.hierarchy, backend=args.backend,
                        theory=args.theory) as served:
            print(json.dumps({"listening": served.url}), flush=True)
            stop.wait()
    finally:
        if broker is not None:
            broker.stop()
        print(json.dumps({"commands": served.commands if served else 0}), file=sys.stderr, flush=True)
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
