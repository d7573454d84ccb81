"""The host's side of the controller's serial cable, for cocotb: frames in, answers out.

Works on ``pfm_sim_top`` (``firmware/rtl/pfm_sim_top.v``), whose HDL UARTs turn bytes into bits,
so Python wakes up a few times per byte, never per bit or per cycle. Frames are encoded and
decoded by the project's own codec, :mod:`control.wire`, so the RTL is checked against the same
code the real client uses. Used by the top-level testbench and by ``pfmtwin cosim``.
"""

from __future__ import annotations

from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, Event, FallingEdge, First, ReadOnly, RisingEdge, Timer

from control import wire
from control.hardware import DEFAULT_HARDWARE, REGISTER_MAP
from control.wire import Cmd

#: Cycles to wait for an answer before giving up: the longest answer (a NAK with a 64-byte
#: text) takes 75 bytes of 10 bits; at 100 cycles per bit that is 75,000 cycles.
ANSWER_TIMEOUT_CYCLES = 200_000
#: Samples pfm_sim_top's sample memory holds (its ADC_MEM_DEPTH) and the longest file name it takes.
ADC_MEM_DEPTH = 1 << 17
FILE_CHARS = 256


def after_cycles(cycles: int) -> Timer:
    """A timer of ``cycles`` clock periods. Unlike ClockCycles it wakes Python once, not per edge."""
    return Timer(round(cycles * 1e9 / DEFAULT_HARDWARE.clock), "ns")


class NakError(RuntimeError):
    """The controller answered NAK: ``code`` (``control.wire.Nak``), refused ``cmd`` and its text."""

    def __init__(self, code: int, cmd: int, message: str) -> None:
        super().__init__(f"NAK {wire.Nak(code).name} for command 0x{cmd:02x}: {message}")
        self.code, self.cmd, self.message = code, cmd, message


class Host:
    """Sends frames to ``pfm_sim_top``'s UART and collects the decoded answers."""

    def __init__(self, dut) -> None:
        self.dut = dut
        self.decoder = wire.Decoder()
        self.answers: list = []          # decoded frames (and Damaged records), in order
        self.received = bytearray()      # every byte the controller sent
        self.command_cycles: list[int] = []  # clock edge at which each frame verdict rose
        self._arrived = Event()
        self.seq = 0
        dut.host_tx_valid.value = 0
        dut.host_tx_byte.value = 0
        cocotb.start_soon(self._receive())
        cocotb.start_soon(self._watch_commands())

    async def reset(self, cycles: int = 4) -> None:
        dut = self.dut
        dut.rst.value = 1
        dut.adc_data.value = 0
        for name in ("adc_mem_on", "adc_mem_load", "adc_mem_dump", "adc_mem_count"):
            getattr(dut, name).value = 0
        await ClockCycles(dut.clk, cycles)
        dut.rst.value = 0
        await ClockCycles(dut.clk, 2)

    async def _receive(self) -> None:
        dut = self.dut
        while True:
            await RisingEdge(dut.host_rx_valid)
            await ReadOnly()
            byte = int(dut.host_rx_byte.value)
            self.received.append(byte)
            items = self.decoder.feed(bytes([byte]))
            if items:
                self.answers.extend(items)
                self._arrived.set()

    async def _watch_commands(self) -> None:
        dut = self.dut
        while True:
            await RisingEdge(dut.command)
            await ReadOnly()
            self.command_cycles.append(int(dut.cycle.value))

    async def send(self, raw: bytes) -> None:
        """Hand ``raw`` to the host UART byte by byte (writes happen mid-cycle, on falling edges)."""
        dut = self.dut
        for byte in raw:
            await FallingEdge(dut.clk)
            if not dut.host_tx_ready.value:
                await RisingEdge(dut.host_tx_ready)
                await FallingEdge(dut.clk)
            dut.host_tx_byte.value = byte
            dut.host_tx_valid.value = 1
            await RisingEdge(dut.clk)  # taken at this edge: ready and valid were both high
            dut.host_tx_valid.value = 0

    async def answer(self, timeout_cycles: int = ANSWER_TIMEOUT_CYCLES):
        """The next decoded answer (a ``wire.Frame`` or ``wire.Damaged``); AssertionError on timeout."""
        while not self.answers:
            self._arrived.clear()
            timer = after_cycles(timeout_cycles)
            fired = await First(self._arrived.wait(), timer)
            if fired is timer and not self.answers:
                raise AssertionError(f"no answer from the controller within {timeout_cycles} cycles")
        return self.answers.pop(0)

    def next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFFFF
        return self.seq

    async def request(self, cmd: int, payload: bytes = b"", seq: int | None = None):
        """Send one frame and return its answer frame (checked to carry the same SEQ)."""
        seq = self.next_seq() if seq is None else seq
        await self.send(wire.encode(cmd, seq, payload))
        frame = await self.answer()
        assert isinstance(frame, wire.Frame), f"answer to SEQ {seq} was damaged: {frame}"
        assert frame.seq == seq, f"answer carries SEQ {frame.seq}, the request had {seq}"
        return frame

    @staticmethod
    def check(frame) -> bytes:
        """The payload of an ACK; NakError for a NAK."""
        if frame.cmd == Cmd.NAK:
            raise NakError(*wire.unpack_nak(frame.payload))
        assert frame.cmd == Cmd.ACK, f"answer command 0x{frame.cmd:02x} is neither ACK nor NAK"
        return frame.payload

    async def check_async(self, request) -> bytes:
        """:meth:`check` of the answer an awaitable ``request`` returns."""
        return self.check(await request)

    async def write(self, register: str, value: int) -> None:
        """WRITE_REG; a negative value is sent as its 32-bit two's complement."""
        frame = await self.request(Cmd.WRITE_REG, wire.pack_register(REGISTER_MAP[register], value & 0xFFFFFFFF))
        payload = self.check(frame)
        assert payload == b"", f"ACK of WRITE_REG {register} carries {payload!r}"

    async def read(self, register: str) -> int:
        """READ_REG: the 32-bit value."""
        payload = self.check(await self.request(Cmd.READ_REG, wire.pack_register(REGISTER_MAP[register], 0)))
        assert len(payload) == 4, f"ACK of READ_REG {register} carries {len(payload)} bytes, expected 4"
        return int.from_bytes(payload, "little")


class Analog:
    """The analog side of ``pfm_sim_top``: ADC samples in, DAC pins and the pixel stream watched.

    * ADC, fed by Python (:meth:`load`): on each ``adc_strobe`` the next code of :attr:`samples`
      (0 once they run out) goes to ``adc_data``, taken by the lock-in in that cycle; the scanner
      DAC codes and the clock edge at that moment are recorded per sample in
      :attr:`sample_positions` and :attr:`sample_cycles`. Two Python wake-ups per sample.
    * ADC, fed from the simulator's sample memory (:meth:`load_memory`): the codes go to the
      memory through a file once, the HDL takes one per strobe and records the DAC codes
      (:meth:`memory_positions`); Python is not woken per sample.
    * Pixels: every ``pixel_valid`` appends ``(amplitude code, signed phase code)`` to :attr:`pixels`.
    * Pulses: every bias pulse at the DAC pins becomes a dict in :attr:`pulses` with the clock
      edge of its rising and falling edges, the code and the X/Y DAC codes while it was applied.
    """

    def __init__(self, dut) -> None:
        self.dut = dut
        self.samples: list[int] = []
        self.sample_index = 0
        self.sample_positions: list[tuple[int, int]] = []
        self.sample_cycles: list[int] = []
        self.sample_drive: list[int] = []
        self.pixels: list[tuple[int, int]] = []
        self.pulses: list[dict] = []
        self.pixel_arrived = Event()
        self.pulse_ended = Event()
        self._feeder = None  # the task that feeds adc_data per sample (load), if running
        self._memory: Path | None = None  # the folder of the sample memory's files (load_memory)
        cocotb.start_soon(self._pixels())
        cocotb.start_soon(self._pulses())

    def load(self, samples) -> None:
        """ADC codes for the next scan, in strobe order, fed by Python at every strobe."""
        self.samples = [int(s) for s in samples]
        self.sample_index = 0
        self.sample_positions = []
        self.sample_cycles = []
        self.sample_drive = []
        if self._feeder is None:
            # Back from the sample memory, if it was on: the feeder turns it off at the next
            # falling edge (a caller may be in ReadOnly), long before a scan command gets through.
            self._feeder = cocotb.start_soon(self._adc(memory_off=self._memory is not None))
        self._memory = None

    async def load_memory(self, samples, folder: Path) -> None:
        """ADC codes for the next scan, in strobe order, taken by the HDL from its sample memory.

        Writes them to ``folder``/samples.hex and has the simulator read it. Up to
        :data:`ADC_MEM_DEPTH` samples; the DAC codes at each one are :meth:`memory_positions`.
        """
        codes = np.asarray(samples, dtype=np.int64)
        if len(codes) > ADC_MEM_DEPTH:
            raise ValueError(f"{len(codes)} samples exceed the sample memory's {ADC_MEM_DEPTH}; feed them with load()")
        if self._feeder is not None:  # no Python wake-up per strobe from here on
            self._feeder.cancel()
            self._feeder = None
        self.samples, self.sample_index = [], 0
        self.sample_positions, self.sample_cycles = [], []
        folder = Path(folder)
        (folder / "samples.hex").write_text("".join(f"{c:04x}\n" for c in (codes & 0xFFFF).tolist()))
        dut = self.dut
        await FallingEdge(dut.clk)  # a writable moment between edges, whatever phase called us
        dut.samples_file.value = _verilog_string(folder / "samples.hex")
        dut.positions_file.value = _verilog_string(folder / "positions.hex")
        dut.adc_mem_count.value = len(codes)
        dut.adc_mem_on.value = 1
        dut.adc_mem_load.value = 1
        await RisingEdge(dut.clk)  # the HDL reads the file at this edge
        await FallingEdge(dut.clk)
        dut.adc_mem_load.value = 0
        self._memory = folder

    async def memory_positions(self) -> np.ndarray:
        """The (x, y) DAC codes at every sample taken from the memory since :meth:`load_memory`, (n, 2)."""
        dut = self.dut
        await FallingEdge(dut.clk)
        taken = int(dut.adc_mem_taken.value)
        if taken == 0:
            return np.zeros((0, 2), dtype=np.int64)
        dut.adc_mem_dump.value = 1
        await RisingEdge(dut.clk)  # the HDL writes the file at this edge
        await FallingEdge(dut.clk)
        dut.adc_mem_dump.value = 0
        # One word per line; Icarus adds "// 0x..." address comments, and "@" lines may set addresses.
        words = [int(line.split("//")[0], 16) for line in (self._memory / "positions.hex").read_text().splitlines()
                 if line.split("//")[0].strip() and not line.startswith("@")]
        if len(words) != taken:
            raise RuntimeError(f"the simulator wrote {len(words)} sample positions; {taken} samples were taken")
        packed = np.array(words, dtype=np.int64)
        return np.stack([packed >> 16, packed & 0xFFFF], axis=1)

    async def _adc(self, memory_off: bool = False) -> None:
        dut = self.dut
        if memory_off:
            await FallingEdge(dut.clk)
            dut.adc_mem_on.value = 0
        while True:
            await RisingEdge(dut.adc_strobe)
            n = self.sample_index
            dut.adc_data.value = self.samples[n] if n < len(self.samples) else 0
            self.sample_index = n + 1
            await ReadOnly()
            self.sample_positions.append((int(dut.x_dac.value), int(dut.y_dac.value)))
            self.sample_cycles.append(int(dut.cycle.value))
            self.sample_drive.append(dut.drive_dac.value.to_signed())

    async def _pixels(self) -> None:
        dut = self.dut
        while True:
            await RisingEdge(dut.pixel_valid)
            await ReadOnly()
            self.pixels.append((int(dut.pixel_amplitude.value), dut.pixel_phase.value.to_signed()))
            self.pixel_arrived.set()

    async def _pulses(self) -> None:
        dut = self.dut
        while True:
            await RisingEdge(dut.bias_on)
            await ReadOnly()
            record = {"rise": int(dut.cycle.value), "code": dut.bias_dac.value.to_signed(),
                      "x": int(dut.x_dac.value), "y": int(dut.y_dac.value)}
            await FallingEdge(dut.bias_on)
            await ReadOnly()
            record["fall"] = int(dut.cycle.value)
            record["cycles"] = record["fall"] - record["rise"]
            self.pulses.append(record)
            self.pulse_ended.set()

    async def wait_pixels(self, count: int, timeout_cycles: int) -> None:
        """Until :attr:`pixels` holds ``count`` pixels; AssertionError after ``timeout_cycles``."""
        while len(self.pixels) < count:
            self.pixel_arrived.clear()
            timer = after_cycles(timeout_cycles)
            fired = await First(self.pixel_arrived.wait(), timer)
            if fired is timer and len(self.pixels) < count:
                raise AssertionError(f"{len(self.pixels)} of {count} pixels arrived within {timeout_cycles} cycles")

    async def wait_pulse(self, count: int, timeout_cycles: int) -> None:
        """Until :attr:`pulses` holds ``count`` finished pulses; AssertionError after the timeout."""
        while len(self.pulses) < count:
            self.pulse_ended.clear()
            timer = after_cycles(timeout_cycles)
            fired = await First(self.pulse_ended.wait(), timer)
            if fired is timer and len(self.pulses) < count:
                raise AssertionError(f"pulse {count} did not end within {timeout_cycles} cycles")


def _verilog_string(path: Path) -> int:
    """``path`` as the value of a Verilog string port (``FILE_CHARS`` bytes, the text right-aligned)."""
    text = str(path).encode()
    if len(text) > FILE_CHARS:
        raise ValueError(f"file name {str(path)!r} is {len(text)} bytes; pfm_sim_top takes {FILE_CHARS}: use a shorter folder")
    return int.from_bytes(text, "big")
