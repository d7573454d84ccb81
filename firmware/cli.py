"""``pfmtwin cosim`` and ``pfmtwin bench firmware``: plug-ins of the ``pfmtwin`` command line.

Registered under the entry-point groups ``pfmtwin.commands`` and ``pfmtwin.benches``, so
``scenarios`` (the CLI) never imports ``firmware``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

from control.served import Served
from control.urls import listen_address
from emulator.cli import twin_url
from firmware import runner
from firmware.cosim import TOP_SOURCES, CosimConfig

#: UART clock cycles per bit in co-simulation: 12.5 Mbaud, so register traffic costs little
#: simulated time. The instrument's own rate (HardwareSpec.uart_baud) is available with
#: --uart-cycles 100; nothing else depends on it.
COSIM_UART_CYCLES = 8


def cosim(listen: str, twin: str, *, sim: str | None = None, uart_cycles: int = COSIM_UART_CYCLES,
          config: CosimConfig | None = None) -> None:
    """Build the top level and serve it until the process is stopped (blocks).

    Raises:
        UrlError: ``listen`` is not ``socket://HOST:PORT``.
    """
    listen_address(listen)  # refused here, before the RTL is built
    if not 4 <= uart_cycles <= 100_000:
        raise ValueError(f"uart_cycles={uart_cycles!r} must be in 4..100000 clock cycles per bit")
    config = config or CosimConfig()
    # The sample memory's files (one scan's ADC codes, the DAC codes at each): removed on every
    # way out, signals included (_stop_on turns them into SystemExit).
    with tempfile.TemporaryDirectory(prefix="pfmtwin-cosim-") as files:
        runner.run("pfm_sim_top", TOP_SOURCES, "firmware.tb.cosim_tb", parameters={"CLKS_PER_BIT": uart_cycles},
                   sim=sim, extra_env={"PFM_COSIM_LISTEN": listen, "PFM_COSIM_TWIN": twin,
                                       "PFM_COSIM_CONFIG": json.dumps(config.__dict__), "PFM_COSIM_FILES": files})


def _stop_on(*signals: int) -> None:
    """Turn these signals into SystemExit in the main thread.

    The simulator runs as a child of this process (``subprocess.run`` in cocotb's runner), and
    the simulator ignores SIGTERM. Python's default SIGTERM handling ends this process at once
    and orphans the simulator, still serving on its port; an exception instead unwinds
    ``subprocess.run``, which kills its child.
    """
    def stop(signum, frame) -> None:
        raise SystemExit(128 + signum)

    for number in signals:
        signal.signal(number, stop)


def _cosim(args) -> int:
    config = CosimConfig(adc_full_scale=args.adc_full_scale, pixel_samples=args.pixel_samples,
                         max_pulse_cycles=args.max_pulse_cycles)
    _stop_on(signal.SIGTERM, signal.SIGHUP)
    try:
        cosim(args.listen, twin_url(args.twin, args.seed), sim=args.sim, uart_cycles=args.uart_cycles, config=config)
    except KeyboardInterrupt:
        pass
    return 0


def register(subparsers) -> None:
    """Add ``cosim`` to the ``pfmtwin`` command line."""
    s = subparsers.add_parser(
        "cosim", help="serve the controller RTL in a simulator, with the twin's physics, over the wire protocol")
    s.add_argument("--listen", default="socket://127.0.0.1:7002", help="socket://HOST:PORT (port 0 picks one)")
    s.add_argument("--seed", type=int, default=None, help="the twin's seed (overrides seed= in --twin)")
    s.add_argument("--twin", default="", help="twin options as in twin:// URLs, e.g. 'grid=64&field=5e-7'")
    s.add_argument("--sim", choices=runner.SIMULATORS, default=None, help="HDL simulator (default $SIM or icarus)")
    s.add_argument("--uart-cycles", type=int, default=COSIM_UART_CYCLES,
                   help="clock cycles per UART bit (the instrument's 1 Mbaud is 100)")
    s.add_argument("--adc-full-scale", type=float, default=CosimConfig.adc_full_scale,
                   help="cantilever amplitude at ADC full scale, m")
    s.add_argument("--pixel-samples", type=int, default=CosimConfig.pixel_samples,
                   help="ADC samples per scan pixel in the RTL (lock-in decimation)")
    s.add_argument("--max-pulse-cycles", type=int, default=CosimConfig.max_pulse_cycles,
                   help="longest pulse simulated, clock cycles")
    s.set_defaults(func=_cosim)


# -- benchmark ---------------------------------------------------------------------------------


def cosim_process(twin: str = "grid=64&field=5e-7", seed: int = 3, sim: str = "icarus",
                  timeout: float = 300.0) -> Served:
    """``pfmtwin cosim`` in a subprocess, listening on a free loopback port; a context manager.

    ``timeout``: how long building the RTL and starting the simulator may take, s.
    """
    return Served("cosim", "--listen", "socket://127.0.0.1:0", "--seed", str(seed), "--twin", twin, "--sim", sim,
                  start_timeout=timeout)


def bench_firmware(url: str = "", repeat: int = 3) -> dict:
    """Cycles per second of the top level on each simulator, and wall time per co-simulated pixel.

    ``url`` is unused (benchmarks share one signature); ``repeat`` scans per simulator.
    """
    import control

    out: dict = {}
    for sim in runner.SIMULATORS:
        with tempfile.TemporaryDirectory() as folder:
            result = Path(folder) / "bench.json"
            runner.run("pfm_sim_top", TOP_SOURCES, "firmware.tb.bench_tb", parameters={"CLKS_PER_BIT": COSIM_UART_CYCLES},
                       sim=sim, extra_env={"PFM_BENCH_OUT": str(result)})
            out[sim] = json.loads(result.read_text())
        with cosim_process(sim=sim) as process, control.connect(process.url) as scope:
            spec = control.ScanSpec(center=(2.5e-7, 2.5e-7), size=(5e-7, 5e-7), pixels=(16, 16), line_rate=10.0)
            scope.scan(spec)  # warm-up: first-call costs of numba and the twin
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                scope.scan(spec)
                times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            scope.apply_pulse(2.5e-7, 2.5e-7, 8.0, 1e-4)
            pulse = time.perf_counter() - t0
        per_pixel = sorted(times)[len(times) // 2] / (16 * 16)
        out[sim].update(cosim_wall_s_per_pixel=round(per_pixel, 6), cosim_scan_16x16_s=round(per_pixel * 256, 3),
                        cosim_pulse_0_1ms_s=round(pulse, 3))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firmware.cli")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
