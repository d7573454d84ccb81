"""cocotb testbench of firmware/rtl/frame_parser.v (with uart_rx/uart_tx), top frame_parser_tb_top.

The reference model is the project's own codec, ``control.wire.Decoder`` (plain Python): on the
same bytes the RTL must give the same sequence of verdicts, good frames (seq, cmd, length,
payload) and bad-CRC frames (seq, cmd, length), and the same count of bytes skipped while
hunting up to each verdict. The Decoder's garbage items are not verdicts; their sizes are what
the RTL's ``dropped`` counter is checked against.

Parts, as in cocotb's examples:
    ByteDriver       drives in_valid/in_byte (one byte per cycle, optional idle cycles)
    UartDriver       drives uart_tx's valid/ready input, or raw waveforms on the line
    VerdictMonitor   collects frame_ok / frame_bad_crc pulses as Verdicts
    model_verdicts   the Decoder's verdicts on a byte string (no cocotb)
    check            compares the two lists and says where they first differ

Randomness is seeded from ``FRAME_PARSER_SEED`` (default below) and logged. Run through
``firmware.runner`` (tests/firmware/test_frame_parser.py) or ``python -m firmware.tb.frame_parser_tb``.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import cocotb
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge

from control.wire import HEADER_SIZE, SYNC, TRAILER_SIZE, Cmd, Damaged, Decoder, Frame, encode, pack_register

DEFAULT_SEED = 20240611
SEED = int(os.environ.get("FRAME_PARSER_SEED", DEFAULT_SEED))
#: Test 2: independent streams (the DUT is reset and a fresh Decoder used for each), items each.
STREAMS = int(os.environ.get("FRAME_PARSER_STREAMS", 12))
ITEMS_PER_STREAM = int(os.environ.get("FRAME_PARSER_ITEMS", 80))


# -- model ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """One frame verdict, from the RTL or from the model.

    kind: "ok" or "bad_crc". payload: the bytes of a good frame of at most MAX_PAYLOAD bytes,
    else None (the RTL stores no payload for longer frames). dropped: bytes skipped while
    hunting since the stream start, up to this frame's header.
    """

    kind: str
    seq: int
    cmd: int
    length: int
    payload: bytes | None
    dropped: int


def model_verdicts(stream: bytes, max_payload: int) -> list[Verdict]:
    """The verdicts control.wire.Decoder gives on ``stream``, in order."""
    out: list[Verdict] = []
    dropped = 0
    for item in Decoder().feed(stream):
        if isinstance(item, Frame):
            n = len(item.payload)
            out.append(Verdict("ok", item.seq, item.cmd, n, item.payload if n <= max_payload else None, dropped))
        elif isinstance(item, Damaged) and item.kind == "crc":
            n = item.size - HEADER_SIZE - TRAILER_SIZE
            out.append(Verdict("bad_crc", item.seq, item.cmd, n, None, dropped))
        else:
            dropped += item.size  # garbage: not a verdict, only counted
    return out


def check(rtl: list[Verdict], model: list[Verdict], what: str) -> None:
    """Assert the RTL's verdicts equal the model's, naming the first difference."""
    for i, (r, m) in enumerate(zip(rtl, model)):
        assert r == m, f"{what}: verdict {i} differs:\n  RTL   {r}\n  model {m}"
    assert len(rtl) == len(model), f"{what}: RTL gave {len(rtl)} verdicts, the model {len(model)}"


# -- stimulus ---------------------------------------------------------------------------------


def random_frame(rng: random.Random, max_payload: int, long_chance: float = 0.05) -> bytes:
    """A valid frame with random seq, cmd and payload (sometimes longer than MAX_PAYLOAD)."""
    if rng.random() < long_chance:
        n = rng.randint(max_payload + 1, max_payload + 200)
    else:
        n = rng.randint(0, max_payload)
    return encode(rng.randrange(256), rng.randrange(65536), rng.randbytes(n))


def random_garbage(rng: random.Random) -> bytes:
    """Junk between frames, rich in SYNC bytes and header-shaped windows to exercise the hunt."""
    kind = rng.randrange(4)
    if kind == 0:
        return rng.randbytes(rng.randint(1, 24))
    if kind == 1:  # runs of SYNC: every one of them is a candidate header
        return bytes(SYNC if rng.random() < 0.6 else rng.randrange(256) for _ in range(rng.randint(1, 16)))
    if kind == 2:  # a header whose check byte is wrong
        good = encode(rng.randrange(256), rng.randrange(65536), b"")[:HEADER_SIZE]
        return good[:-1] + bytes([good[-1] ^ rng.randint(1, 255)])
    return bytes([SYNC])  # a lone SYNC right before whatever comes next


def random_stream(rng: random.Random, items: int, max_payload: int) -> tuple[bytes, dict[str, int]]:
    """A byte stream mixing valid, corrupted and truncated frames with garbage."""
    parts, counts = [], {"valid": 0, "corrupted": 0, "truncated": 0, "garbage": 0}
    for _ in range(items):
        r = rng.random()
        if r < 0.45:
            parts.append(random_frame(rng, max_payload))
            counts["valid"] += 1
        elif r < 0.65:  # one byte changed anywhere: header (HCRC fails) or body/CRC (CRC fails)
            frame = bytearray(random_frame(rng, max_payload))
            frame[rng.randrange(len(frame))] ^= rng.randint(1, 255)
            parts.append(bytes(frame))
            counts["corrupted"] += 1
        elif r < 0.75:  # cut anywhere: the following bytes complete it
            frame = random_frame(rng, max_payload, long_chance=0.0)
            parts.append(frame[: rng.randrange(1, len(frame))])
            counts["truncated"] += 1
        else:
            parts.append(random_garbage(rng))
            counts["garbage"] += 1
    return b"".join(parts), counts


# -- driver, monitor ----------------------------------------------------------------------------


class ByteDriver:
    """Drives the parser's direct byte input: one byte per cycle, idle cycles at random."""

    def __init__(self, dut, rng: random.Random):
        self.dut, self.rng = dut, rng
        dut.in_valid.value = 0
        dut.in_byte.value = 0

    async def send(self, data: bytes, idle_chance: float = 0.0) -> None:
        dut = self.dut
        for b in data:
            if idle_chance and self.rng.random() < idle_chance:
                dut.in_valid.value = 0
                await ClockCycles(dut.clk, self.rng.randint(1, 3))
            dut.in_valid.value = 1
            dut.in_byte.value = b
            await RisingEdge(dut.clk)
        dut.in_valid.value = 0


class UartDriver:
    """Drives uart_tx's valid/ready input, or raw levels on the serial line (line_ext)."""

    def __init__(self, dut, clks_per_bit: int):
        self.dut, self.cpb = dut, clks_per_bit
        dut.tx_valid.value = 0
        dut.tx_byte.value = 0
        dut.line_ext.value = 1

    async def send(self, data: bytes) -> None:
        dut = self.dut
        for b in data:
            dut.tx_valid.value = 1
            dut.tx_byte.value = b
            await FallingEdge(dut.clk)  # mid-cycle: tx_ready is settled
            while not dut.tx_ready.value:
                await FallingEdge(dut.clk)
            await RisingEdge(dut.clk)  # the handshake edge
        dut.tx_valid.value = 0

    async def raw(self, bits: list[int]) -> None:
        """Hold the line at each level for one bit period (tx idles high meanwhile)."""
        for level in bits:
            self.dut.line_ext.value = level
            await ClockCycles(self.dut.clk, self.cpb)
        self.dut.line_ext.value = 1


class VerdictMonitor:
    """Collects the parser's verdict pulses, waking only on them (not every clock)."""

    def __init__(self, dut):
        self.dut = dut
        self.verdicts: list[Verdict] = []
        self.max_payload = len(dut.payload) // 8
        self._task = cocotb.start_soon(self._run())

    async def _run(self) -> None:
        dut = self.dut
        while True:
            await RisingEdge(dut.frame_event)  # frame_ok | frame_bad_crc
            await ReadOnly()  # every output of this clock edge has settled
            ok, bad = int(dut.frame_ok.value), int(dut.frame_bad_crc.value)
            assert ok + bad == 1, f"frame_ok={ok} and frame_bad_crc={bad} together"
            length = int(dut.len.value)
            too_long = int(dut.too_long.value)
            assert too_long == (length > self.max_payload), f"too_long={too_long} for len={length}"
            payload = None
            if ok and not too_long:
                payload = dut.payload.value[8 * length - 1 : 0].to_bytes(byteorder="little") if length else b""
            self.verdicts.append(
                Verdict("ok" if ok else "bad_crc", int(dut.seq.value), int(dut.cmd.value), length, payload,
                        int(dut.dropped.value)))

    def stop(self) -> None:
        self._task.cancel()


class ByteMonitor:
    """Collects uart_rx's received bytes and framing errors."""

    def __init__(self, dut):
        self.dut = dut
        self.data = bytearray()
        self.framing_errors = 0
        self._task = cocotb.start_soon(self._run())

    async def _run(self) -> None:
        dut = self.dut
        while True:
            await RisingEdge(dut.rx_event)  # rx_valid | rx_framing_error
            await ReadOnly()
            if dut.rx_valid.value:
                self.data.append(int(dut.rx_byte.value))
            if dut.rx_framing_error.value:
                self.framing_errors += 1

    def stop(self) -> None:
        self._task.cancel()


# -- helpers ------------------------------------------------------------------------------------


async def reset(dut, use_uart: int = 0) -> None:
    dut.rst.value = 1
    dut.use_uart.value = use_uart
    dut.in_valid.value = 0
    dut.in_byte.value = 0
    dut.tx_valid.value = 0
    dut.tx_byte.value = 0
    dut.line_ext.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


def clks_per_bit(dut) -> int:
    """The top level's CLKS_PER_BIT: its parameter if the simulator exposes it, else the env."""
    try:
        return int(dut.CLKS_PER_BIT.value)
    except (AttributeError, TypeError, ValueError):
        return int(os.environ.get("FRAME_PARSER_CLKS_PER_BIT", 4))


# -- tests ----------------------------------------------------------------------------------------


@cocotb.test()
async def round_trip(dut):
    """Valid frames back to back (with idle cycles): each comes out with its seq, cmd, len, payload."""
    rng = random.Random(SEED)
    dut._log.info("seed %d (set FRAME_PARSER_SEED to change)", SEED)
    await reset(dut)
    max_payload = len(dut.payload) // 8
    driver, monitor = ByteDriver(dut, rng), VerdictMonitor(dut)

    lengths = [0, 1, 2, max_payload - 1, max_payload, max_payload + 1, 300]
    lengths += [rng.randint(0, max_payload) for _ in range(150)] + [rng.randint(max_payload + 1, 200) for _ in range(5)]
    rng.shuffle(lengths)
    frames = [(rng.randrange(256), rng.randrange(65536), rng.randbytes(n)) for n in lengths]
    stream = b"".join(encode(cmd, seq, payload) for cmd, seq, payload in frames)

    await driver.send(stream, idle_chance=0.05)
    await ClockCycles(dut.clk, 3)
    monitor.stop()

    expected = [Verdict("ok", seq, cmd, len(p), p if len(p) <= max_payload else None, 0) for cmd, seq, p in frames]
    check(monitor.verdicts, expected, "round trip vs. the encoded frames")
    check(monitor.verdicts, model_verdicts(stream, max_payload), "round trip vs. Decoder")
    dut._log.info("round trip: %d frames compared (%d bytes)", len(expected), len(stream))


@cocotb.test()
async def random_streams_match_decoder(dut):
    """Garbage, valid, corrupted and truncated frames: the RTL's verdicts equal the Decoder's."""
    rng = random.Random(SEED + 1)
    max_payload = len(dut.payload) // 8
    total = {"valid": 0, "corrupted": 0, "truncated": 0, "garbage": 0}
    compared = ok = bad = nbytes = 0
    for s in range(STREAMS):
        # Separate streams bound the damage of a rare false header (random bytes that pass the
        # HCRC) with a huge LEN, which would swallow the rest of one long stream.
        await reset(dut)
        stream, counts = random_stream(rng, ITEMS_PER_STREAM, max_payload)
        driver, monitor = ByteDriver(dut, rng), VerdictMonitor(dut)
        await driver.send(stream, idle_chance=0.05)
        await ClockCycles(dut.clk, 3)
        monitor.stop()
        model = model_verdicts(stream, max_payload)
        check(monitor.verdicts, model, f"stream {s} (seed {SEED})")
        for k, v in counts.items():
            total[k] += v
        compared += len(model)
        ok += sum(v.kind == "ok" for v in model)
        bad += sum(v.kind == "bad_crc" for v in model)
        nbytes += len(stream)
    dut._log.info("random streams: %d bytes, items %s; %d verdicts compared (%d ok, %d bad CRC)",
                  nbytes, total, compared, ok, bad)
    # Guard against a stimulus that silently degenerated (e.g. everything swallowed).
    assert ok >= total["valid"] // 2 and bad >= total["corrupted"] // 4, (ok, bad, total)


@cocotb.test()
async def uart_end_to_end(dut):
    """uart_tx -> line -> uart_rx -> parser: bytes loop back intact and frames are parsed;
    a bad stop bit gives a framing error and no byte; a short glitch gives nothing."""
    await reset(dut, use_uart=1)
    cpb = clks_per_bit(dut)
    max_payload = len(dut.payload) // 8
    uart, bytes_in, verdicts = UartDriver(dut, cpb), ByteMonitor(dut), VerdictMonitor(dut)

    frames = encode(Cmd.READ_REG, 7, pack_register(0x02)) + b"\x00\xa5\xff" + encode(Cmd.NOW, 65535)
    bad = bytearray(encode(Cmd.WRITE_REG, 8, pack_register(0x20, 0x1234)))
    bad[-3] ^= 0x40
    stream = frames + bytes(bad)
    await uart.send(stream)
    await ClockCycles(dut.clk, 12 * cpb)
    assert bytes(bytes_in.data) == stream, f"loopback: sent {stream.hex()}, received {bytes(bytes_in.data).hex()}"
    assert bytes_in.framing_errors == 0
    check(verdicts.verdicts, model_verdicts(stream, max_payload), "UART end to end")
    assert [v.kind for v in verdicts.verdicts] == ["ok", "ok", "bad_crc"]

    # A character whose stop bit is 0: start, 8 data bits (0x55), stop held low.
    await uart.raw([0] + [(0x55 >> i) & 1 for i in range(8)] + [0, 0])
    await ClockCycles(dut.clk, 2 * cpb)
    assert bytes_in.framing_errors == 1, f"{bytes_in.framing_errors} framing errors; expected 1"
    # A glitch shorter than half a bit is not a start bit.
    dut.line_ext.value = 0
    await RisingEdge(dut.clk)
    dut.line_ext.value = 1
    await ClockCycles(dut.clk, 12 * cpb)
    # The receiver still works afterwards.
    await uart.send(b"\x5a")
    await ClockCycles(dut.clk, 12 * cpb)
    bytes_in.stop()
    verdicts.stop()
    assert bytes(bytes_in.data) == stream + b"\x5a", "framing error or glitch produced a byte, or the next byte was lost"
    assert bytes_in.framing_errors == 1
    dut._log.info("UART end to end: %d bytes looped back, %d verdicts compared, CLKS_PER_BIT=%d",
                  len(stream) + 1, len(verdicts.verdicts), cpb)


if __name__ == "__main__":
    # Same build as tests/firmware/test_frame_parser.py.
    from firmware.runner import run

    run("frame_parser_tb_top",
        ["frame_parser_tb_top.v", "frame_parser.v", "pfm_crc.v", "uart_rx.v", "uart_tx.v"],
        "firmware.tb.frame_parser_tb", parameters={"MAX_PAYLOAD": 64, "CLKS_PER_BIT": 4},
        extra_env={"FRAME_PARSER_SEED": str(SEED), "FRAME_PARSER_CLKS_PER_BIT": "4"})
