"""The lock-in's Python model: float64 reference, bit-accurate model, generated RTL tables."""

from __future__ import annotations

import math

import numpy as np
import pytest

from firmware import lockin_model as m

FS = 4e6
FULL_SCALE = 32767
#: 11 periods in 128 samples (343.75 kHz at 4 MHz): exact in the 32-bit NCO, so the boxcar
#: nulls the 2f image exactly.
WHOLE_INC, WHOLE_N = 2**32 * 11 // 128, 128


def wrap(deg):
    return (np.asarray(deg) + 180.0) % 360.0 - 180.0


def test_the_committed_rtl_tables_are_what_the_model_generates():
    for name, text in m.generated_files().items():
        assert (m.RTL / name).read_text() == text, f"run `python -m firmware.lockin_model` ({name})"


def test_phase_increment_round_trips_the_frequency():
    inc = m.phase_increment(350e3)
    assert inc == round(0.0875 * 2**32)
    assert abs(m.reference_frequency(inc) - 350e3) < FS / 2**32


@pytest.mark.parametrize("phase", [-179.0, -90.0, 0.0, 37.5, 135.0, 180.0])
def test_reference_recovers_a_clean_sinusoid_to_float_precision(phase):
    inc, n = WHOLE_INC, WHOLE_N
    theta = 2 * np.pi * m.nco_phase(4 * n, inc).astype(float) / 2**32
    x = 1234.5 * np.cos(theta + np.deg2rad(phase))
    amp, ph = m.reference(x, inc, n)
    assert np.allclose(amp, 1234.5, rtol=1e-12, atol=0)
    assert np.all(np.abs(wrap(ph - phase)) < 1e-9)


def test_reference_leaks_the_2f_image_only_off_whole_periods():
    inc = m.phase_increment(350e3)
    assert m.image_leakage(WHOLE_INC, WHOLE_N, 3).max() < 1e-12
    leak = m.image_leakage(inc, 57)[0]
    assert 1e-3 < leak < 1.0 / (57 * abs(math.sin(2 * math.pi * 0.0875)))


@pytest.mark.parametrize("amplitude", [0.1 * FULL_SCALE, 0.5 * FULL_SCALE, 0.9 * FULL_SCALE])
def test_demodulate_recovers_a_quantized_sinusoid_within_its_fixed_point(amplitude):
    inc, n = WHOLE_INC, WHOLE_N
    for phase in np.linspace(-180, 180, 37)[:-1]:
        x = m.sinusoid(amplitude, phase, inc, 2 * n)
        amp, ph = m.demodulate(x, inc, n)
        ref_amp, ref_ph = m.reference(x, inc, n)
        bound_amp, bound_ph = m.error_bound(x, n, ref_amp)
        assert np.all(np.abs(amp - ref_amp) <= bound_amp)
        assert np.all(np.abs(wrap(ph - ref_ph)) <= bound_ph)
        # ADC rounding (+-0.5 LSB) is the only other error against the synthesized truth.
        assert np.all(np.abs(amp - amplitude) <= bound_amp + 0.5)
        assert np.all(np.abs(wrap(ph - phase)) <= bound_ph + math.degrees(0.5 / amplitude))


def test_error_bound_holds_and_is_tight_over_random_inputs():
    rng = np.random.default_rng(7)
    ratio_amp = ratio_phase = 0.0
    for _ in range(300):
        inc = m.phase_increment(rng.uniform(315e3, 385e3))
        n = int(rng.integers(16, 500))
        x = m.sinusoid(rng.uniform(0.1, 0.9) * FULL_SCALE, rng.uniform(-180, 180), inc, 2 * n, rng.uniform(0, 500), rng)
        amp, ph = m.demodulate(x, inc, n)
        ref_amp, ref_ph = m.reference(x, inc, n)
        bound_amp, bound_ph = m.error_bound(x, n, ref_amp)
        ratio_amp = max(ratio_amp, (np.abs(amp - ref_amp) / bound_amp).max())
        ratio_phase = max(ratio_phase, (np.abs(wrap(ph - ref_ph)) / bound_ph).max())
    assert ratio_amp <= 1.0 and ratio_phase <= 1.0
    assert ratio_phase > 0.3, "the phase bound should not be loose"
    # A sinusoid within full scale: at most 0.03 % FS of amplitude, 0.025 deg of phase (>= 10 % FS).
    x = m.sinusoid(FULL_SCALE, 0, 123456789, 1000)
    assert m.error_bound(x, 1000, [FULL_SCALE])[0][0] < 3e-4 * FULL_SCALE
    assert m.error_bound(m.sinusoid(0.1 * FULL_SCALE, 0, 123456789, 100), 100, [0.1 * FULL_SCALE])[1][0] < 0.025


def test_codes_and_units():
    inc, n = WHOLE_INC, WHOLE_N
    x = m.sinusoid(10000.0, -90.0, inc, n)
    amp_codes, phase_codes = m.demodulate_codes(x, inc, n)
    amp, ph = m.demodulate(x, inc, n)
    assert amp_codes.dtype == np.int64 and amp[0] == amp_codes[0] / 256
    assert ph[0] == phase_codes[0] * 360 / 65536
    assert abs(phase_codes[0] + 16384) <= 3  # -90 deg is -2^14 in 2^-16 turn


def test_sine_table_symmetry_and_cordic():
    table = m.sine_table()
    assert len(table) == 2**m.REF_ADDR_BITS and table.max() == FULL_SCALE and table.min() == -FULL_SCALE
    exact = FULL_SCALE * np.sin(2 * np.pi * (np.arange(len(table)) + 0.5) / len(table))
    assert np.abs(table - exact).max() <= 0.5
    gain = m.cordic_gain()
    for angle in np.linspace(-179.9, 180, 97):
        x, y = 1e12 * math.cos(math.radians(angle)), 1e12 * math.sin(math.radians(angle))
        mag, z = m.cordic_vector(int(x), int(y))
        assert abs(mag / gain - 1e12) < 1e12 * 1e-9
        assert abs(wrap(z * 360 / 2 ** (m.Z_BITS - 1) - angle)) < m.CORDIC_ANGLE_ERROR


def test_trailing_partial_pixel_is_dropped_and_zero_decimation_is_one():
    inc = m.phase_increment(350e3)
    x = m.sinusoid(5000.0, 0.0, inc, 250)
    assert len(m.demodulate(x, inc, 80)[0]) == 3
    assert np.array_equal(m.demodulate_codes(x[:5], inc, 0)[0], m.demodulate_codes(x[:5], inc, 1)[0])
    with pytest.raises(ValueError):
        m.demodulate(np.array([40000]), inc, 1)
