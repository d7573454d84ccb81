"""BEPS files and ``pfmtwin beps``: NSID that sidpy reads, the real PbTiO3 loops, the comparison."""

from __future__ import annotations

import json
import warnings

import h5py
import numpy as np
import pytest

import control
from control.nsid import NsidError
from control.nsid_be import read_beps, write_beps
from control.sho import fit_sho, loop_metrics, projected_loops
from control.spectroscopy import Band, BEPSSpec, triangle
from scenarios.beps import despike, normalized

from .test_cli import ROOT, pfmtwin

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="You don't have igor2 installed", category=ImportWarning)
    import SciFiReaders
import sidpy

REAL = ROOT / "tests" / "data" / "pfm-beps" / "BEPS_PTO_50x50.h5"
TWIN = "twin://?seed=11&init=up&grid=128&field=1e-6&texture=0&drift=0&scanner=closed"


@pytest.fixture(scope="module")
def measured():
    with control.connect(TWIN) as scope:
        spec = BEPSSpec.grid((5e-7, 5e-7), (2e-7, 1e-7), (3, 2), triangle(8.5, 16), step=1e-3,
                             band=Band(bins=16, duration=1e-3))
        result = scope.beps(spec)
    return result, fit_sho(result.frequencies, result.response)


def test_the_real_file_reads_as_50_by_50_loops_of_the_published_waveform():
    loops = read_beps(REAL)
    assert loops.loops.shape == (2500, 64) and loops.positions.shape == (2500, 2)
    np.testing.assert_allclose(loops.dc, triangle(8.5, 64))
    assert loops.positions[1, 0] > loops.positions[0, 0] and loops.positions[1, 1] == loops.positions[0, 1]
    # Most points of the film switch: coercive biases of a few volts either way.
    summary = loop_metrics(loops.dc, despike(loops.loops)).summary()
    assert 0.5 < summary["switched_fraction"] < 0.9
    assert 3 < summary["coercive_positive_V"]["median"] < 7 and -5 < summary["coercive_negative_V"]["median"] < -1


def test_despiking_removes_single_step_jumps_and_keeps_the_loop():
    dc = np.array(triangle(8.0, 32))
    loop = np.where(np.sin(np.arange(32) * 2 * np.pi / 32) > 0, 1.0, -1.0)[None, :]
    spiked = loop.copy()
    spiked[0, 5] = 400.0
    np.testing.assert_array_equal(despike(spiked), despike(loop))
    assert np.nanmax(normalized(dc, despike(spiked))) <= 1.0 + 1e-12


def test_write_beps_gives_nsid_that_sidpy_reads_with_bglib_dimension_names(tmp_path, measured):
    result, fit = measured
    path = write_beps(tmp_path / "beps.h5", result, fit, metadata={"sample": "twin"})
    reader = SciFiReaders.NSIDReader(str(path))
    try:
        datasets = {ds.title: ds for ds in reader.read().values()}
    finally:
        reader.close()
    response = datasets["response"]
    assert isinstance(response, sidpy.Dataset) and response.data_type == sidpy.DataType.SPECTRAL_IMAGE
    names = [response._axes[i].name for i in range(response.ndim)]
    assert names == ["X", "Y", "DC_Offset", "Field", "Frequency"]
    kinds = [response._axes[i].dimension_type for i in range(response.ndim)]
    assert kinds == [sidpy.DimensionType.SPATIAL] * 2 + [sidpy.DimensionType.SPECTRAL] * 3
    assert response.shape == (3, 2, 16, 2, 16)
    # X varies along axis 0: the second point of the first row.
    np.testing.assert_allclose(np.asarray(response)[1, 0], result.response[1], rtol=1e-6)  # sidpy reads complex64
    np.testing.assert_allclose(np.asarray(datasets["Frequency"])[2, 1], fit.frequency[5], rtol=1e-6)
    assert datasets["Quality_Factor"].shape == (3, 2, 16, 2)
    assert {"Amplitude", "Phase", "R2_Criterion", "Frequency_error"} <= set(datasets)


def test_write_beps_round_trips_the_off_field_loops_and_is_deterministic(tmp_path, measured):
    result, fit = measured
    a = write_beps(tmp_path / "a.h5", result, fit)
    b = write_beps(tmp_path / "b.h5", result, fit)
    assert a.read_bytes() == b.read_bytes()
    back = read_beps(a)
    off = fit.phase[:, :, 1]
    axis = 0.5 * np.angle(np.mean(np.exp(2j * off)))  # the off-field loops' own phase axis
    np.testing.assert_allclose(back.loops, projected_loops(fit, axis)[:, :, 1], rtol=1e-12)
    np.testing.assert_allclose(back.positions, result.positions)
    with pytest.raises(control.RecordingError, match="already exists"):
        write_beps(a, result, fit)


def test_a_file_without_loops_is_a_clear_error(tmp_path):
    path = tmp_path / "empty.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(NsidError, match="holds no BEPS loops"):
        read_beps(path)


@pytest.mark.slow
def test_pfmtwin_beps_compares_the_twin_with_the_real_loops(tmp_path):
    out = tmp_path / "beps"
    run = pfmtwin("beps", "twin://?seed=1&grid=128&field=1e-6", "--real", str(REAL), "--out", str(out),
                  "--pixels", "3", "3", "--size", "6e-7", "6e-7", "--bins", "16")
    printed = json.loads(run.stdout)
    summary = json.loads((out / "beps.json").read_text())
    assert printed["comparison"] == summary["comparison"]
    assert summary["twin"]["points"] == 9 and summary["real"]["points"] == 2500
    # The twin's loops are those of a ferroelectric: most points switch, at a few volts.
    assert summary["twin"]["switched_fraction"] >= 0.5
    assert 2 < summary["comparison"]["coercive_positive_V"]["twin"] < 8
    assert (out / "beps.png").stat().st_size > 20_000
    with h5py.File(out / "beps.h5") as f:
        assert f["beps/response/response"].shape == (3, 3, 64, 2, 16)
