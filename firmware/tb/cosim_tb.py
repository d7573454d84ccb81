"""cocotb side of ``pfmtwin cosim``: the RTL controller served over the wire protocol.

One long cocotb test: it resets ``pfm_sim_top``, builds the twin and a
:class:`firmware.cosim.CosimInstrument` over a blocking port to the RTL, and runs the emulator's
server in a cocotb ``bridge`` thread. The simulator stands still while the server waits for
clients; each command runs simulation time through ``resume``. The listening URL is printed as
one JSON line, ``{"listening": "socket://HOST:PORT"}``.

Environment: ``PFM_COSIM_LISTEN`` (socket://HOST:PORT, port 0 picks one), ``PFM_COSIM_TWIN``
(twin URL), ``PFM_COSIM_CONFIG`` (JSON of :class:`firmware.cosim.CosimConfig` fields),
``PFM_COSIM_FILES`` (a folder for the sample memory's files; without it, or for a scan longer
than the memory, Python feeds the ADC at every sample, at about half the speed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.task import bridge, resume

from control import wire
from control.hardware import STATUS_BITS
from control.urls import listen_address
from control.wire import Cmd
from emulator.protocol import Emulator
from emulator.server import Server
from firmware import be_model
from firmware.cosim import CosimConfig, CosimInstrument
from firmware.tb.host import ADC_MEM_DEPTH, Analog, Host, after_cycles
from twin.backend import open_twin

#: Extra cycles allowed beyond a pulse's width or a pixel's period before a wait fails.
SLACK_CYCLES = 200_000


class CocotbRtl:
    """:class:`firmware.cosim.RtlPort` on cocotb: blocking calls for the server's bridge thread."""

    def __init__(self, dut, host: Host, analog: Analog, files: Path | None = None) -> None:
        self.dut, self.host, self.analog = dut, host, analog
        self.files = files
        self.write = resume(host.write)
        self.read = resume(host.read)
        self.read_address = resume(self._read_address)
        self.pulse = resume(self._pulse)
        self.scan = resume(self._scan)
        self.be = resume(self._be)
        self._cycles = resume(self._cycle)

    @property
    def cycles(self) -> int:
        return self._cycles()

    async def _cycle(self) -> int:
        return int(self.dut.cycle.value)

    async def _read_address(self, address: int) -> int:
        payload = self.host.check(await self.host.request(Cmd.READ_REG, wire.pack_register(address, 0)))
        return int.from_bytes(payload, "little")

    async def _pulse(self, cycles: int) -> dict:
        emitted = len(self.analog.pulses)
        await self.host.write("PULSE_TRIGGER", 1)
        await self.analog.wait_pulse(emitted + 1, cycles + SLACK_CYCLES)
        return dict(self.analog.pulses[emitted])

    async def _scan(self, samples: np.ndarray, pixels: int, control: int, on_pixels):
        analog = self.analog
        memory = self.files is not None and len(samples) <= ADC_MEM_DEPTH
        if memory:
            await analog.load_memory(samples, self.files)
        else:
            analog.load(samples)
        analog.pixels = []
        period = int(await self.host.read("PIXEL_CYCLES"))
        await self.host.write("CONTROL", control)
        while len(analog.pixels) < pixels:
            await analog.wait_pixels(len(analog.pixels) + 1, period + SLACK_CYCLES)
            on_pixels(np.array(analog.pixels, dtype=np.int64))
        positions = await analog.memory_positions() if memory else np.array(analog.sample_positions, dtype=np.int64)
        return np.array(analog.pixels, dtype=np.int64), positions


    async def _be(self, table, repeats: int, samples: np.ndarray, write_table: bool) -> np.ndarray:
        host, analog = self.host, self.analog
        length = len(table)
        if write_table:
            await host.write("BE_TABLE_ADDR", 0)
            for code in table:
                await host.write("BE_TABLE_DATA", int(code) & 0xFFFFFFFF)
        await host.write("BE_LENGTH", length)
        await host.write("BE_REPEATS", repeats)
        if self.files is not None and len(samples) <= ADC_MEM_DEPTH:
            await analog.load_memory(samples, self.files)
        else:
            analog.load(samples)
        await host.write("BE_START", 1)
        await after_cycles(length * (repeats * be_model.ADC_DIV + 1))  # one timer: the play's length
        while (await host.read("STATUS")) >> STATUS_BITS["BE_BUSY"] & 1:
            await after_cycles(1000)
        await host.write("BE_CAPTURE_ADDR", 0)
        return np.array([(await host.read("BE_CAPTURE_DATA") + 2**31) % 2**32 - 2**31 for _ in range(length)])


@cocotb.test()
async def serve(dut):
    """Serve the RTL with the twin's physics until the process is stopped."""
    host, analog = Host(dut), Analog(dut)
    await host.reset()
    files = os.environ.get("PFM_COSIM_FILES")
    rtl = CocotbRtl(dut, host, analog, Path(files) if files else None)
    config = CosimConfig(**json.loads(os.environ.get("PFM_COSIM_CONFIG", "{}")))
    twin = open_twin(os.environ.get("PFM_COSIM_TWIN", "twin://"))
    bind_host, bind_port = listen_address(os.environ.get("PFM_COSIM_LISTEN", "socket://127.0.0.1:7002"))

    def serve_blocking() -> None:
        instrument = CosimInstrument(twin, rtl, config)
        server = Server(Emulator("", instrument=instrument, backend="cosim"))
        bound = server.listen_tcp(bind_host, bind_port)
        print(json.dumps({"listening": f"socket://{bound[0]}:{bound[1]}"}), flush=True)
        server.serve_forever()

    await bridge(serve_blocking)()
