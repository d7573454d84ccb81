"""The statistics panel of control.analysis on synthetic images whose answers are known, and on real scans."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

import control
from control import analysis
from control.analysis import STATISTICS, UnknownStatisticError, image_statistics
from control.contract import wrap_phase

REAL = Path(__file__).resolve().parents[1] / "data" / "pfm-real"
PITCH = 4e-9  # m


def scan(amplitude: np.ndarray, phase: np.ndarray | None = None, pitch: tuple[float, float] = (PITCH, PITCH),
         ) -> control.ScanResult:
    """A raster ScanResult holding these arrays (lines, points), pixels ``pitch`` (x, y) m apart."""
    lines, points = amplitude.shape
    spec = control.ScanSpec(center=(points * pitch[0] / 2, lines * pitch[1] / 2),
                            size=(points * pitch[0], lines * pitch[1]), pixels=(points, lines))
    x, y = spec.positions()
    phase = np.zeros_like(amplitude) if phase is None else phase
    return control.ScanResult(spec, {"amplitude": amplitude, "phase": phase, "height": np.zeros_like(amplitude)},
                              x, y, np.arange(lines, dtype=float))


def columns(n: int = 256) -> np.ndarray:
    """Signed distance (pixels) of each pixel centre to a wall between columns n/2 - 1 and n/2."""
    return np.broadcast_to(np.arange(n) - (n / 2 - 0.5), (n, n)).copy()


def wall_scan(dip, n: int = 256) -> control.ScanResult:
    """A vertical wall in the middle of an n x n image: phase 0 left, 180 right, amplitude dip(s)."""
    s = columns(n)
    return scan(dip(s), np.where(s > 0, 180.0, 0.0))


def power_law_field(beta: float, n: int = 256, seed: int = 0) -> np.ndarray:
    """A random field whose power spectrum goes as f^-beta (periodic, zero mean)."""
    rng = np.random.default_rng(seed)
    f = np.hypot(np.fft.fftfreq(n)[None, :], np.fft.fftfreq(n)[:, None])
    f[0, 0] = np.inf
    return np.fft.ifft2(np.fft.fft2(rng.normal(size=(n, n))) * f ** (-beta / 2)).real


def test_every_statistic_is_a_documented_function_found_by_name():
    for name, (unit, definition) in STATISTICS.items():
        fn = analysis.statistic(name)
        assert fn.__name__ == name and fn.__doc__ and definition and unit
    values = image_statistics(scan(np.ones((32, 32))))
    assert list(values) == list(STATISTICS)
    assert list(image_statistics(scan(np.ones((32, 32))), names=["line_cv"])) == ["line_cv"]
    with pytest.raises(UnknownStatisticError, match=r"statistic 'noise' is not in the panel; use one of: median_"):
        image_statistics(scan(np.ones((32, 32))), names=["noise"])


def test_pixel_noise_and_median_of_white_noise_ignore_line_offsets():
    rng = np.random.default_rng(1)
    offsets = rng.normal(0, 30e-12, size=(256, 1))  # stripes far larger than the noise
    result = scan(100e-12 + offsets + rng.normal(0, 5e-12, size=(256, 256)))
    assert analysis.pixel_noise(result) == pytest.approx(5e-12 / analysis.median_amplitude(result), rel=0.03)
    assert analysis.median_amplitude(result) == pytest.approx(100e-12, rel=0.05)
    assert analysis.amplitude_statistics(result.amplitude)["pixel_noise"] == analysis.pixel_noise(result)


def test_line_cv_of_pure_line_offsets():
    level = np.linspace(50e-12, 150e-12, 64)
    result = scan(np.repeat(level[:, None], 64, axis=1))
    assert analysis.line_cv(result) == pytest.approx(level.std() / level.mean(), rel=1e-9)
    assert analysis.line_cv(scan(np.repeat(level[None, :], 64, axis=0))) == pytest.approx(0.0, abs=1e-12)


def test_correlations_of_noise_smoothed_along_one_axis():
    noise = np.random.default_rng(2).normal(size=(256, 256))
    along = scan(ndimage.uniform_filter1d(noise, 3, axis=1, mode="wrap"))  # box of 3: lag-1 correlation 2/3
    assert analysis.pixel_correlation(along) == pytest.approx(2 / 3, abs=0.02)
    assert analysis.line_correlation(along) == pytest.approx(0.0, abs=0.02)
    across = scan(ndimage.uniform_filter1d(noise, 3, axis=0, mode="wrap"))
    assert analysis.line_correlation(across) == pytest.approx(2 / 3, abs=0.02)
    assert analysis.pixel_correlation(across) == pytest.approx(0.0, abs=0.02)


def test_stripe_share_is_one_for_line_offsets_and_small_for_isotropic_noise():
    rng = np.random.default_rng(3)
    assert analysis.stripe_share(scan(np.repeat(rng.normal(size=(256, 1)), 256, axis=1))) == pytest.approx(1.0)
    white = analysis.stripe_share(scan(rng.normal(size=(256, 256))))
    assert 0.03 < white < 0.15, "about 1.25 / sqrt(256) = 0.08 for white noise"


@pytest.mark.parametrize("beta", [0.0, 2.0, 3.0])
def test_psd_slope_of_a_power_law_field(beta):
    # One 256-pixel image fixes the slope to about +-0.18 (few Fourier modes at 8 cycles): average four.
    slopes = [analysis.psd_slope(scan(power_law_field(beta, seed=seed))) for seed in range(4)]
    assert np.mean(slopes) == pytest.approx(-beta, abs=0.2)
    assert np.allclose(slopes, -beta, atol=0.6)


def test_psd_slope_needs_enough_frequency_bins():
    assert math.isnan(analysis.psd_slope(scan(power_law_field(2.0, n=64))))


def test_phase_states_and_their_scatter():
    rng = np.random.default_rng(4)
    s = columns()
    right = s > 40  # the 180 deg state holds 88 of 256 columns
    # Wrapped-normal phase noise of std sigma has circular std sqrt(-2 ln R) = sigma exactly.
    phase = np.where(right, 200.0 + rng.normal(0, 30, s.shape), 20.0 + rng.normal(0, 10, s.shape))
    phase = wrap_phase(phase)
    result = scan(np.full(s.shape, 1e-10), phase)
    assert analysis.phase_up(result) == pytest.approx(20.0, abs=0.5)
    assert analysis.phase_down(result) == pytest.approx(200.0, abs=1.0)
    assert analysis.phase_separation(result) == pytest.approx(180.0, abs=1.5)
    assert analysis.phase_scatter(result) == pytest.approx(10.0, abs=0.5), "the larger state's scatter"
    bent = scan(np.full(s.shape, 1e-10), np.where(right, 160.0, 0.0))
    assert analysis.phase_separation(bent) == pytest.approx(160.0)
    assert analysis.phase_separation(scan(np.full(s.shape, 1e-10), np.where(right, 200.0, 0.0))) == pytest.approx(160.0)


def test_domains_ignore_phase_noise_in_weak_regions():
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:128, :128]
    disc = (yy - 64) ** 2 + (xx - 64) ** 2 < 20**2
    weak = (xx > 70) | (yy < 30)  # a low-amplitude region crossing the disc ...
    salt = weak & (rng.random((128, 128)) < 0.4)  # ... where 40 % of the pixels show a random phase
    phase = np.where(disc, 180.0, 0.0)
    phase[salt] = rng.uniform(-90, 270, size=int(salt.sum()))
    result = scan(np.where(weak, 0.2, 1.0) + 0.1 * rng.random((128, 128)), phase)
    d = analysis.domains(result)
    assert ndimage.label(d > 0)[1] == 1 and ndimage.label(d < 0)[1] == 1, "one disc in one background"
    assert np.mean(d[disc] < 0) > 0.97 and np.mean(d[~disc] > 0) > 0.99
    raw = analysis.domains(result, smooth=1, sigma=0, min_area=1)
    assert ndimage.label(raw < 0)[1] > 100, "without the filters the noise makes many specks"


def test_wall_contrast_and_width_of_a_gaussian_dip():
    sigma = 3.0  # pixels
    result = wall_scan(lambda s: 1e-10 * (1 - 0.8 * np.exp(-(s**2) / (2 * sigma**2))))
    assert analysis.wall_contrast(result) == pytest.approx(1 - 0.8 * np.exp(-0.25 / (2 * sigma**2)), rel=0.01)
    assert analysis.wall_width(result) == pytest.approx(2 * np.sqrt(2 * np.log(2)) * sigma * PITCH, rel=0.05)
    # A background makes one state weaker: the depth is measured on each side from its own plateau.
    uneven = wall_scan(lambda s: 1e-10 * (0.2 + (np.where(s > 0, 0.5, 1.0) - 0.2) * (1 - np.exp(-(s**2) / (2 * sigma**2)))))
    assert analysis.wall_width(uneven) == pytest.approx(analysis.wall_width(result), rel=0.05)


@pytest.mark.parametrize("w", [3.0, 6.0])
def test_wall_width_of_a_tanh_wall(w):
    result = wall_scan(lambda s: 1e-10 * np.abs(np.tanh(s / w)))
    fwhm = 2 * w * np.arctanh(0.5)
    # No pixel lies on the wall itself (the nearest are half a pixel away), so the sampled
    # minimum sits a little above zero and the half level a little higher: up to a pixel wider.
    assert fwhm * PITCH <= analysis.wall_width(result) <= (fwhm + 1.0) * PITCH


def test_wall_density_of_a_straight_wall():
    pitch = (1e-6 / 256, 1e-6 / 128)  # non-square pixels: 256 points per line, 128 lines
    yy, xx = np.mgrid[:128, :256]
    vertical = scan(np.ones((128, 256)), np.where(xx >= 100, 180.0, 0.0), pitch)
    horizontal = scan(np.ones((128, 256)), np.where(yy >= 50, 180.0, 0.0), pitch)
    # 1 um of wall in a 1 um x 1 um scan
    assert analysis.wall_density(vertical) == pytest.approx(1e6, rel=1e-9)
    assert analysis.wall_density(horizontal) == pytest.approx(1e6, rel=1e-9)


def test_domain_radius_and_minority_fraction_of_a_disc():
    yy, xx = np.mgrid[:256, :256]
    disc = (yy - 120.3) ** 2 + (xx - 130.6) ** 2 < 20**2
    result = scan(np.ones((256, 256)), np.where(disc, 180.0, 0.0))
    assert analysis.domain_radius(result) == pytest.approx(20 * PITCH, rel=0.02)
    assert analysis.minority_fraction(result) == pytest.approx(np.pi * 400 / 256**2, rel=0.03)
    assert analysis.wall_density(result) == pytest.approx(2 * np.pi * 20 * PITCH * 4 / np.pi / (256 * PITCH) ** 2, rel=0.05)


def test_a_single_domain_gives_nan_wall_statistics_not_an_error():
    values = image_statistics(scan(1e-10 + 1e-11 * np.random.default_rng(6).random((128, 128))))
    for name in ("wall_contrast", "wall_width", "domain_radius", "phase_down", "phase_separation"):
        assert math.isnan(values[name]), name
    assert values["minority_fraction"] == 0.0 and values["wall_density"] == 0.0
    assert math.isfinite(values["phase_scatter"]) and math.isfinite(values["pixel_noise"])
    with pytest.raises(analysis.NoWallError, match="no domain wall"):
        analysis.wall_mask(scan(np.ones((32, 32))))


def test_nan_pixels_are_ignored_and_an_all_nan_image_gives_nan():
    rng = np.random.default_rng(7)
    s = columns()
    amplitude = 1e-10 * (1 - 0.8 * np.exp(-(s**2) / 18)) + 1e-12 * rng.normal(size=s.shape)
    amplitude[rng.random(s.shape) < 0.01] = np.nan
    amplitude[:, 7] = np.nan
    phase = np.where(s > 0, 180.0, 0.0)
    phase[rng.random(s.shape) < 0.01] = np.nan
    values = image_statistics(scan(amplitude, phase))
    assert all(math.isfinite(v) for v in values.values()), values
    empty = image_statistics(scan(np.full((128, 128), np.nan), np.full((128, 128), np.nan)))
    assert all(math.isnan(v) for k, v in empty.items() if k not in ("minority_fraction", "wall_density")), empty


def test_wall_trace_of_a_straight_wall():
    result = wall_scan(lambda s: 1e-10 * np.abs(np.tanh(s / 3)), n=64)
    wall = analysis.locate_wall(result)
    mask_x = result.x[analysis.wall_mask(result)]
    pixel = result.x[0, 1] - result.x[0, 0]
    assert np.array_equal(wall.y, result.y[:, 0])
    assert np.allclose(wall.x, np.median(mask_x), atol=pixel), "trace and mask find the same wall"
    assert np.ptp(wall.x) < 1e-3 * pixel, "a straight wall is straight"


def test_the_panel_runs_on_the_real_scans():
    from control.nsid import read_scans

    scans = read_scans(REAL)
    assert len(scans) == 4, f"expected the four PTO scans in {REAL}"
    for path, result in scans:
        assert result.amplitude.shape == (256, 256)
        values = image_statistics(result)
        assert all(math.isfinite(v) for v in values.values()), values
        assert 0 < values["minority_fraction"] < 0.5
        flipped = control.ScanResult(result.spec, {k: v.T for k, v in result.channels.items()}, result.x, result.y,
                                     result.line_times)
        assert values["stripe_share"] > analysis.stripe_share(flipped), f"{path.name}: the line offsets lie along axis 0"


def test_the_compiled_median_filter_is_scipys():
    """control.analysis.median_filter (compiled for size 3) gives scipy's values, dtype and edges."""
    from scipy import ndimage

    from control.analysis import median_filter

    rng = np.random.default_rng(3)
    images = [rng.standard_normal((32, 32)), rng.integers(-1, 2, (17, 40)).astype(np.int8),
              rng.integers(0, 3, (1, 7)).astype(float), rng.standard_normal((2, 2)),
              np.sign(rng.standard_normal((64, 64)))]
    for image in images:
        for size in (3, 5):
            ours = median_filter(image, size)
            assert ours.dtype == image.dtype
            assert np.array_equal(ours, ndimage.median_filter(image, size=size, mode="nearest")), (image.shape, size)
    assert not np.array_equal(median_filter(images[0], 3), images[0]), "it filters"


@pytest.mark.parametrize("smooth", [1, 3])
def test_the_compiled_wall_trace_is_the_python_steps(smooth):
    """trace_wall's compiled pass gives polarization, median filter, orientation and line fractions to round-off."""
    rng = np.random.default_rng(5)
    for flip, holes in ((0.0, False), (180.0, True), (37.0, True)):
        s = columns(40)[:24] + 3 * np.sin(np.arange(24) / 4)[:, None]
        phase = wrap_phase(np.where(s < 0, 0.0, 180.0) + flip + 25 * rng.standard_normal(s.shape))
        if holes:
            phase[rng.random(s.shape) < 0.05] = np.nan
        result = scan(np.ones_like(s), phase)
        wall = analysis.trace_wall(result, smooth)
        state = analysis.polarization(result)
        if smooth > 1:
            state = analysis.median_filter(state, smooth)
        left, right = state[:, :2].mean(), state[:, -2:].mean()
        oriented = state if left >= 0 else -state
        np.testing.assert_allclose(wall.state, oriented, rtol=0, atol=1e-12)
        np.testing.assert_allclose(wall.x - wall.left, ((1 + oriented) / 2).mean(axis=1) * wall.width, rtol=1e-12)
        assert wall.crossing == (left * right < 0) and wall.crossing
    empty = analysis.trace_wall(scan(np.ones((8, 8)), np.full((8, 8), np.nan)), smooth)
    assert not empty.crossing and np.all(empty.state == 0)
