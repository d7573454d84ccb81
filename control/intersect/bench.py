"""``pfmtwin bench intersect``: round trips through an INTERSECT service, in another process, on loopback."""

from __future__ import annotations

import statistics
import time

DEFAULT = "twin://?seed=7"


def bench_intersect(url: str = DEFAULT, repeat: int = 20) -> dict:
    """Latency of a small command (``now()``) and of a 256 x 256 image, through ``pfmtwin serve``.

    A Mosquitto broker and ``pfmtwin serve --intersect`` (serving ``url``) start here and stop at
    the end. The image's time over the bus is compared with the same scan on the same backend
    in this process (the backend's own time), so the difference is what the bus costs.

    Returns:
        Plain data: medians and ranges in ms, the image's size on the bus and the throughput.
    """
    import control
    from control.contract import ScanSpec
    from control.intersect.broker import Mosquitto
    from control.served import Served

    spec = ScanSpec(center=(1e-6, 1e-6), size=(1e-6, 1e-6), pixels=(256, 256), line_rate=10.0)
    out: dict = {"backend": url, "repeat": repeat}
    with Mosquitto() as broker, Served("serve", "--intersect", broker.url, "--backend", url,
                                       "--hierarchy", "pfmtwin.bench.pfm.-.microscope") as served:
        with control.connect(served.url + "?timeout=60") as scope:
            scope.now()
            small = []
            for _ in range(repeat * 10):
                t0 = time.perf_counter()
                scope.now()
                small.append(time.perf_counter() - t0)
            image = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                result = scope.scan(spec)
                image.append(time.perf_counter() - t0)
    with control.connect(url) as local:
        local.scan(spec)
        own = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            local.scan(spec)
            own.append(time.perf_counter() - t0)
    payload = sum(v.nbytes for v in result.channels.values()) + result.x.nbytes + result.y.nbytes
    bus = statistics.median(image) - statistics.median(own)
    out["small_command_ms"] = {"median": 1e3 * statistics.median(small), "min": 1e3 * min(small),
                               "max": 1e3 * max(small), "n": len(small)}
    out["image_256x256_ms"] = {"median": 1e3 * statistics.median(image), "min": 1e3 * min(image),
                               "max": 1e3 * max(image), "in_process_median": 1e3 * statistics.median(own),
                               "bus_ms": 1e3 * bus, "bytes": payload, "base64_bytes": 4 * ((payload + 2) // 3),
                               "MB_per_s_on_bus": payload / bus / 1e6 if bus > 0 else None}
    return out
