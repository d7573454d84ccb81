"""Band excitation and BEPS over the wire (protocol 1.2): the same bits as the twin, exactly once."""

from __future__ import annotations

import numpy as np
import pytest

import control
from control import wire
from control.serial_client import SerialClient
from control.spectroscopy import Band, BEPSSpec, triangle
from control.wire import Cmd, Nak

from .test_reliability import Raw

OPTIONS = "seed=3&grid=128&field=1e-6"
BAND = Band(bins=16, duration=1e-3)
SPEC = BEPSSpec.grid((5e-7, 5e-7), (2e-7, 2e-7), (3, 2), triangle(8.5, 16), step=1e-3, band=BAND)


def _reference():
    with control.connect("twin://?" + OPTIONS) as twin:
        return twin.band_excitation(4e-7, 4e-7, BAND), twin.beps(SPEC), twin.now()


def test_be_and_beps_over_the_socket_are_the_twins(emulators):
    be, beps, end = _reference()
    running = emulators(OPTIONS)
    with control.connect(running.url) as scope:
        got_be, got = scope.band_excitation(4e-7, 4e-7, BAND), scope.beps(SPEC)
        assert scope.now() == end
    np.testing.assert_array_equal(got_be.response, be.response)
    assert (got_be.start, got_be.x, got_be.y) == (be.start, be.x, be.y)
    np.testing.assert_array_equal(got.response, beps.response)
    np.testing.assert_array_equal(got.times, beps.times)
    assert running.emulator.executed == 2


def test_beps_over_a_faulty_link_runs_once_and_loses_nothing(emulators):
    """Frames dropped, damaged and doubled, and the link cut during the BEPS answer: the client
    resends, the instrument answers from its cache, the film is written once."""
    _, beps, end = _reference()
    running = emulators(OPTIONS, faults="drop=0.02,corrupt=0.02,duplicate=0.02,disconnect_at=2")
    client = SerialClient(running.url, timeout=0.2)
    with control.Guarded(client) as scope:
        scope.band_excitation(4e-7, 4e-7, BAND)
        got = scope.beps(SPEC)
        assert scope.now() == end
    np.testing.assert_array_equal(got.response, beps.response)
    assert running.emulator.executed == 2, "a command executed twice (or not at all)"
    assert client.stats["reconnected"] >= 1 and client.stats["resent"] >= 1


def test_a_grid_larger_than_one_request_goes_as_several_commands(emulators, monkeypatch):
    _, beps, _ = _reference()
    monkeypatch.setattr(wire, "beps_points_per_command", lambda steps: 2)  # 6 points: 3 requests
    running = emulators(OPTIONS)
    with control.connect(running.url) as scope:
        scope.band_excitation(4e-7, 4e-7, BAND)
        got = scope.beps(SPEC)
    np.testing.assert_array_equal(got.response, beps.response)
    np.testing.assert_array_equal(got.times, beps.times)
    assert running.emulator.executed == 1 + 3


@pytest.mark.parametrize("cmd, payload, says", [
    (Cmd.BE, wire.pack_be(4e-7, 4e-7, Band(amplitude=10.5)), "bias limit"),
    (Cmd.BE, wire.pack_be(4e-7, 4e-7, BAND)[:-3], "BE payload"),
    (Cmd.BEPS, wire.pack_beps(BEPSSpec(points=((4e-7, 4e-7),), dc=(9.5,), band=BAND)), "bias limit"),
    (Cmd.BEPS, wire.pack_beps(BEPSSpec(points=((4e-7, 4e-6),), dc=(1.0,), band=BAND)), "BEPS point"),
])
def test_the_instrument_refuses_what_a_client_did_not_check(emulators, cmd, payload, says):
    running = emulators(OPTIONS)
    raw = Raw(running.url, b"r" * 16)
    try:
        raw.identify(1)
        raw.send(cmd, 2, payload)
        answer = raw.answer(2)
    finally:
        raw.close()
    assert answer.cmd == Cmd.NAK
    code, refused, message = wire.unpack_nak(answer.payload)
    assert code in (Nak.OUT_OF_RANGE, Nak.MALFORMED) and refused == cmd and says in message
    assert running.emulator.executed == 0


def test_a_socket_url_sets_the_clients_answer_timeout(emulators):
    running = emulators(OPTIONS)
    with control.connect(running.url + "?timeout=7.5") as scope:
        assert scope._backend.timeout == 7.5
        assert scope.band_excitation(4e-7, 4e-7, BAND).response.shape == (16,)
    with pytest.raises(control.UrlError, match=r"timeout='-1' .* must be a time in \(0, 3600\] s"):
        control.connect(running.url + "?timeout=-1")
