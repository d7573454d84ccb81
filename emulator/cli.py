"""``pfmtwin emulate``: registered as a plug-in command (entry-point group ``pfmtwin.commands``)."""

from __future__ import annotations

import argparse
import ipaddress
import json
import signal
import sys
from urllib.parse import parse_qsl, urlencode

from control.errors import UrlError
from control.urls import listen_address
from emulator.clock import parse_speed
from emulator.faults import FaultPlan
from emulator.protocol import Emulator
from emulator.server import Server


def _speed(text: str) -> float | None:
    try:
        return parse_speed(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def twin_url(twin_options: str, seed: int | None) -> str:
    """The twin URL behind the emulator: ``--twin`` options, with ``--seed`` taking precedence."""
    pairs = dict(parse_qsl(twin_options.lstrip("?"), keep_blank_values=True))
    if seed is not None:
        pairs["seed"] = str(seed)
    return "twin://?" + urlencode(pairs)


def _loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback interface only."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def build(args) -> Server:
    """The server described by the command-line arguments (not yet serving)."""
    plan = FaultPlan.parse(args.faults, seed=args.fault_seed) if args.faults else None
    emulator = Emulator(twin_url(args.twin, args.seed), speed=args.speed, faults=plan)
    server = Server(emulator)
    if args.pty:
        print(json.dumps({"pty": server.open_pty()}), flush=True)
    else:
        host, port = listen_address(args.listen)
        if not _loopback(host):
            print(f"pfmtwin emulate: warning: listening on {host}, beyond this machine. The wire protocol has no "
                  "authentication: anyone who can reach the port can move the tip and apply pulses. Prefer "
                  "socket://127.0.0.1:PORT and an ssh tunnel (ssh -L PORT:127.0.0.1:PORT host).",
                  file=sys.stderr, flush=True)
        try:
            host, port = server.listen_tcp(host, port)
        except OSError as exc:
            raise UrlError(f"--listen {args.listen!r}: cannot listen on {host}:{port} ({exc.strerror or exc}); is "
                           "another emulator running there? Choose another port, or port 0 for a free one") from None
        print(json.dumps({"listening": f"socket://{host}:{port}"}), flush=True)
    return server


def _emulate(args) -> int:
    server = build(args)
    for signum in (signal.SIGTERM, signal.SIGHUP):  # a command under way stops within POLL s
        signal.signal(signum, lambda *_: server.stop_event.set())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        stats = {"commands": server.emulator.commands, "executed": server.emulator.executed,
                 "faults": server.emulator.faults.counts}
        print(json.dumps(stats), file=sys.stderr, flush=True)
    return 0


def register(subparsers) -> None:
    """Add ``emulate`` to the ``pfmtwin`` command line."""
    s = subparsers.add_parser("emulate", help="serve the twin over the wire protocol (TCP socket or pty)")
    s.add_argument("--listen", default="socket://127.0.0.1:7001",
                   help="socket://HOST:PORT to listen on (loopback unless told otherwise; port 0 picks one; "
                        "default: %(default)s). There is no authentication: anyone who reaches the port drives "
                        "the instrument, so keep it on 127.0.0.1 and tunnel (ssh -L) to reach it from elsewhere")
    s.add_argument("--pty", action="store_true", help="open a pseudo-terminal instead and print its path")
    s.add_argument("--seed", type=int, default=None, help="the twin's seed (overrides seed= in --twin; default: the twin's default)")
    s.add_argument("--speed", type=_speed, default=1.0,
                   help="simulated seconds per wall second: 1 = real time, 100 = faster, 'max' = no waiting "
                        "(default: 1.0)")
    s.add_argument("--twin", default="", help="twin options as in twin:// URLs, e.g. 'grid=128&disorder=0.2' (default: none)")
    s.add_argument("--faults", default="", help="e.g. 'drop=0.01,corrupt=0.01,delay=0.002,disconnect_at=30' (default: a perfect link)")
    s.add_argument("--fault-seed", type=int, default=0, help="seed of the fault injection (default: 0)")
    s.set_defaults(func=_emulate)
