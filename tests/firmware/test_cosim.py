"""Firmware in the loop: ``pfmtwin cosim`` serves the RTL, and ``control.connect`` drives it.

The same script runs on ``twin://`` and on the co-simulated controller (Icarus by default, or
$SIM). Stated tolerance, from the RTL's measurement chain (ADC quantization and the lock-in's
fixed point, see firmware/lockin_model.py): amplitude within one ADC LSB of the co-simulation's
deflection scale (1 nm / 32767 = 0.031 pm), phase within 0.1 deg, height equal (it does not pass
through the RTL); pulse records equal field by field (the cycles and code the RTL emitted are the
twin's quantization); instrument times equal.
"""

from __future__ import annotations

import os
import signal
import socket
import time

import numpy as np
import pytest

import control
from control import wire
from control.hardware import REGISTER_ID, REGISTER_MAP
from control.wire import Cmd, Nak
from firmware.cli import cosim_process
from firmware.cosim import CosimConfig
from firmware.spec import nak_messages

from ..conftest import alive, descendants

TWIN_OPTIONS = "grid=64&field=5e-7"
SEED = 3
ADC_LSB = CosimConfig().adc_full_scale / 32767
PHASE_TOL_DEG = 0.1


@pytest.fixture(scope="module")
def cosim():
    with cosim_process(twin=TWIN_OPTIONS, seed=SEED, sim=os.environ.get("SIM", "icarus")) as process:
        yield process


def script(scope) -> dict:
    """Scan, pulse next to the middle, scan again (with retrace)."""
    spec = control.ScanSpec(center=(2.5e-7, 2.5e-7), size=(5e-7, 5e-7), pixels=(8, 8), line_rate=10.0)
    before = scope.scan(spec)
    record = scope.apply_pulse(2.2e-7, 2.6e-7, 8.0, 2.5e-4)
    after = scope.scan(control.ScanSpec(center=(2.5e-7, 2.5e-7), size=(5e-7, 5e-7), pixels=(8, 8),
                                        line_rate=10.0, retrace=True))
    return {"before": before, "record": record, "after": after, "now": scope.now()}


@pytest.mark.slow
def test_scan_and_pulse_through_the_rtl_agree_with_the_twin(cosim):
    with control.connect(f"twin://?seed={SEED}&{TWIN_OPTIONS}") as twin, control.connect(cosim.url) as rtl:
        assert rtl.info().backend == "cosim"
        want, got = script(twin), script(rtl)
    assert got["record"] == want["record"], "the RTL must emit the twin's pulse: code, cycles, start"
    assert got["now"] == want["now"]
    for image in ("before", "after"):
        w, g = want[image].channels, got[image].channels
        assert set(g) == set(w)
        for name in w:
            if name.startswith("height"):
                np.testing.assert_array_equal(g[name], w[name])
            elif name.startswith("amplitude"):
                err = np.abs(g[name] - w[name])
                assert err.max() <= ADC_LSB, f"{image} {name}: error {err.max():.3g} m > 1 ADC LSB {ADC_LSB:.3g} m"
            else:
                err = np.abs((g[name] - w[name] + 180) % 360 - 180)
                assert err.max() <= PHASE_TOL_DEG, f"{image} {name}: phase error {err.max():.3f} deg"
    # The pulse changed the film (the same way on both): the images before and after differ.
    assert np.abs(got["after"].phase - got["before"].phase).max() > 90


def test_cosim_refuses_what_the_rtl_cannot_do(cosim):
    with control.connect(cosim.url) as rtl:
        spiral = control.ScanSpec(center=(2.5e-7, 2.5e-7), size=(2e-7, 2e-7), pixels=(8, 8), path="spiral")
        with pytest.raises(control.PfmTwinError, match="raster scans only"):
            rtl.scan(spiral)
        with pytest.raises(control.PfmTwinError, match="takes pulses up to"):
            rtl.apply_pulse(2e-7, 2e-7, 5.0, 1.0)


def test_read_register_reaches_the_rtl(cosim):
    """READ_REG frames are answered by the RTL's register file, NAKs with its own text."""
    host, port = cosim.url.removeprefix("socket://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        decoder = wire.Decoder()

        def request(cmd, seq, payload):
            sock.sendall(wire.encode(cmd, seq, payload))
            while True:
                frames = [f for f in decoder.feed(sock.recv(4096)) if isinstance(f, wire.Frame)]
                if frames:
                    return frames[0]

        assert request(Cmd.IDENTIFY, 1, wire.pack_identify(b"cosim-test-00001")).cmd == Cmd.ACK
        answer = request(Cmd.READ_REG, 2, wire.pack_register(REGISTER_MAP["ID"]))
        assert answer.cmd == Cmd.ACK and int.from_bytes(answer.payload, "little") == REGISTER_ID
        answer = request(Cmd.READ_REG, 3, wire.pack_register(REGISTER_MAP["PULSE_TRIGGER"]))
        code, refused, text = wire.unpack_nak(answer.payload)
        assert (answer.cmd, code, refused) == (Cmd.NAK, Nak.OUT_OF_RANGE, Cmd.READ_REG)
        assert nak_messages()["ADDRESS"][1] in text
        request(Cmd.BYE, 4, b"")


@pytest.mark.slow
def test_sigterm_to_cosim_ends_its_simulator():
    """`kill PID` of `pfmtwin cosim` (not of its group) must not leave the simulator serving."""
    with cosim_process(twin=TWIN_OPTIONS, seed=SEED, sim=os.environ.get("SIM", "icarus")) as process:
        below = descendants(process.proc.pid)
        assert below, "the simulator runs as a child of pfmtwin cosim"
        os.kill(process.proc.pid, signal.SIGTERM)
        process.proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(alive(p) for p in below) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in below if alive(p)], "processes outlived pfmtwin cosim"


def test_cosim_refuses_a_bad_listen_url_before_building_anything():
    from firmware.cli import cosim

    with pytest.raises(control.UrlError, match=r"listen URL 'socket://127\.0\.0\.1' must be socket://HOST:PORT"):
        cosim("socket://127.0.0.1", "twin://", sim="no-such-simulator")


@pytest.mark.slow
def test_band_excitation_and_beps_through_the_rtl_agree_with_the_twins_cantilever():
    """BE through the RTL's waveform player and capture buffer: the response per bin is the twin's
    cantilever at the table's harmonics, to the ADC's quantization; a small BEPS through the RTL
    (DC steps as RTL pulses) switches the film as the twin's BEPS does."""
    from control.spectroscopy import Band, BEPSSpec
    from twin.backend import open_twin

    options = "grid=64&field=5e-7&noise=0&drift=0&scanner=closed&init=up"
    band = Band(center=357e3, width=200e3, bins=4, duration=1e-3)  # a 160-word table
    # Verilator: a read-out reads its 160 capture words as 160 UART frames (0.3 M cycles), about
    # 0.3 s there and 3 s on Icarus; a BEPS step (an RTL pulse and two read-outs) outlasts the
    # client's default 1 s wait for the next streamed frame, so this client waits longer.
    with cosim_process(twin=options, seed=SEED, sim="verilator") as process:
        with control.connect(process.url + "?timeout=30") as rtl:
            be = rtl.band_excitation(2.5e-7, 2.5e-7, band)
            t_be = rtl.now()
            spec = BEPSSpec(points=((2.5e-7, 2.5e-7), (3.5e-7, 2.5e-7)), dc=(9.0, -9.0), step=1e-3, band=band)
            beps = rtl.beps(spec)  # a small grid: two points
    reference = open_twin(f"twin://?seed={SEED}&{options}")
    reference.move_tip(2.5e-7, 2.5e-7, reference.config.hardware.tip_speed_max)
    fx, fy = reference._parked(2.5e-7, 2.5e-7, be.start)
    want = reference.be.spectrum(fx, fy, band, 0.0, np.random.default_rng(0), frequencies=be.frequencies)
    assert np.all(np.abs(be.frequencies - band.center) <= band.width / 2)
    np.testing.assert_allclose(be.response, want, rtol=2e-3)
    assert t_be - be.start == pytest.approx(band.duration)
    # +9 V writes down under the tip, -9 V back up: the off-field response flips sign each step.
    axis = np.angle(be.response)  # per bin: the phase of the film as it was (up)
    for point in range(2):
        projected = np.real(beps.response[point, :, 1] * np.exp(-1j * axis)[None, :]).mean(axis=1)
        assert projected[0] < 0 < projected[1], f"point {point}: the off-field response did not switch: {projected}"
    assert beps.response.shape == (2, 2, 2, 4) and np.all(beps.times[1] > beps.times[0])
