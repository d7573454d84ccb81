"""Lock-in demodulator of the PFM firmware: bit-accurate model, float64 reference, generated tables.

This is the plain-Python (cocotb-free) twin of ``firmware/rtl/lockin.v``. The testbench checks the
RTL against it bit for bit, and the co-simulation bridge can use it to predict what the RTL reports.

Signal chain (the RTL implements exactly these integer operations):

1. NCO: a 32-bit phase accumulator. Sample ``n`` after a clear is mixed with the reference phase
   ``acc_n = n * phase_increment mod 2**32`` (in units of 2**-32 turn), so the reference frequency
   is ``phase_increment / 2**32 * adc_rate``. ``phase_increment(f)`` gives the register value.
2. Reference: the top ``REF_ADDR_BITS`` (14) bits of ``acc_n`` address a sine table of
   ``2**14`` points per turn with ``REF_BITS`` (16) bit signed values of amplitude
   ``REF_SCALE = 32767``. The table is sampled half a step late, ``sin(2 pi (k + 0.5) / 2**14)``:
   truncating the accumulator loses on average half a step of phase, and the half step puts it
   back, so the reference has no systematic phase lag. Only a quarter wave (4096 entries) is
   stored; the rest follows by symmetry. ``cos`` is the same table a quarter turn ahead.
   The reference then deviates from ``exp(-j theta_n)`` by at most
   ``REFERENCE_ERROR = pi / 2**14 + sqrt(2) / (2 * 32767)`` (phase truncation plus rounding),
   which bounds the lock-in's fixed-point error (``error_bound``); with 12 address bits the
   truncation spur, folded onto DC by the 2f image of a non-integer-period pixel, cost up to
   6 LSB of amplitude, with 14 bits up to 1.6 LSB (measured over 3000 random pixels).
3. Mixing and integrate-and-dump: ``I = sum(x * cos)``, ``Q = -sum(x * sin)`` over
   ``samples_per_pixel`` consecutive samples (a boxcar: its nulls sit on the 2f image when the
   pixel spans a whole number of reference periods). For ``x = A cos(2 pi acc_n / 2**32 + phi)``,
   ``I + jQ ~ (N A REF_SCALE / 2) exp(j phi)``. Accumulators are 48-bit signed.
4. CORDIC vectoring (``CORDIC_ITER`` = 18 iterations after a +-90 deg pre-rotation): magnitude
   ``G |I + jQ|`` with the CORDIC gain ``G ~ 1.6468``, and angle in units of
   ``2**-(ANGLE_BITS + ANGLE_GUARD)`` turn (6 guard bits below the output LSB).
5. Scaling: ``q = floor(mag / N)`` (sequential divider), then
   ``amplitude = round(q * AMP_SCALE / 2**AMP_SHIFT)`` with
   ``AMP_SCALE = round(2**AMP_SHIFT * 2**AMP_FRAC * 2 / (G * REF_SCALE))``, saturated to
   ``AMP_BITS``: **amplitude is unsigned UQ16.8, ADC LSB** (``AMP_BITS`` = 24, ``AMP_FRAC`` = 8),
   and **phase is signed Q0.16 of a turn: one LSB is 360 / 2**16 deg, range [-180, 180) deg**
   (the guarded angle rounded to nearest, wrapping +180 to -180).

The measured phase is that of the input relative to the NCO's cosine (which the firmware also
puts out as the drive reference), so ``A cos(2 pi acc_n / 2**32 + phi)`` reads ``(A, phi)``.

``python -m firmware.lockin_model`` regenerates the tables in ``firmware/rtl``; a test checks the
committed files equal what this module generates.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from control.hardware import DEFAULT_HARDWARE

RTL = Path(__file__).resolve().parent / "rtl"

ADC_BITS = DEFAULT_HARDWARE.adc_bits
PHASE_BITS = 32  # NCO accumulator
REF_ADDR_BITS = 14  # sine table points per turn: 2**14
REF_BITS = 16  # signed reference width
REF_SCALE = 2 ** (REF_BITS - 1) - 1  # reference amplitude, 32767
DEC_BITS = 16  # samples_per_pixel register width (1 .. 65535 samples per pixel)
ACC_BITS = ADC_BITS + REF_BITS + DEC_BITS  # 48: |I|, |Q| <= 65535 * 32768 * 32767 < 2**47
ANGLE_BITS = 16  # phase output: signed, 2**16 LSB per turn
ANGLE_GUARD = 6  # extra CORDIC angle bits below the output LSB
Z_BITS = ANGLE_BITS + ANGLE_GUARD + 1  # CORDIC angle register: +-180 deg and a little beyond
CORDIC_ITER = 18  # residual angle <= atan(2**-17) rad = 4e-4 deg, below the 5.5e-3 deg LSB
AMP_FRAC = 8  # amplitude fraction bits
AMP_BITS = 24  # amplitude output width (unsigned, saturating)
AMP_SHIFT = 32  # fixed-point shift of the amplitude scale constant

PHASE_LSB_DEG = 360.0 / 2**ANGLE_BITS
AMP_LSB = 2.0**-AMP_FRAC


def cordic_gain(iterations: int = CORDIC_ITER) -> float:
    """Magnitude gain of ``iterations`` CORDIC micro-rotations, ~1.6468."""
    return math.prod(math.sqrt(1.0 + 2.0 ** (-2 * i)) for i in range(iterations))


AMP_SCALE = round(2**AMP_SHIFT * 2**AMP_FRAC * 2.0 / (cordic_gain() * REF_SCALE))


def sine_quarter_table() -> list[int]:
    """Quarter-wave table: ``round(REF_SCALE sin(2 pi (k + 0.5) / 2**REF_ADDR_BITS))``, k < 1024."""
    points = 2**REF_ADDR_BITS
    return [round(REF_SCALE * math.sin(2.0 * math.pi * (k + 0.5) / points)) for k in range(points // 4)]


def sine_table() -> np.ndarray:
    """Full-turn signed table that the RTL builds from the quarter wave by symmetry."""
    quarter = np.array(sine_quarter_table(), dtype=np.int64)
    return np.concatenate([quarter, quarter[::-1], -quarter, -quarter[::-1]])


def atan_table() -> list[int]:
    """CORDIC angles ``round(atan(2**-i) / (2 pi) * 2**(Z_BITS - 1))``, in 2**-22 turn."""
    return [round(math.atan(2.0**-i) / (2.0 * math.pi) * 2 ** (Z_BITS - 1)) for i in range(CORDIC_ITER)]


_SINE = sine_table()


def phase_increment(frequency: float, sample_rate: float = DEFAULT_HARDWARE.adc_rate) -> int:
    """NCO phase increment register value for a reference at ``frequency`` (Hz)."""
    return round(frequency / sample_rate * 2**PHASE_BITS) % 2**PHASE_BITS


def reference_frequency(increment: int, sample_rate: float = DEFAULT_HARDWARE.adc_rate) -> float:
    """Exact reference frequency (Hz) of a phase increment."""
    return increment / 2**PHASE_BITS * sample_rate


def nco_phase(n: int, increment: int) -> np.ndarray:
    """Accumulator values (2**-32 turn) of the first ``n`` samples after a clear."""
    return (np.arange(n, dtype=np.uint64) * np.uint64(increment % 2**PHASE_BITS)) % np.uint64(2**PHASE_BITS)


def nco(n: int, increment: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference ``(cos, sin)`` codes the RTL mixes with the first ``n`` samples after a clear."""
    address = (nco_phase(n, increment) >> np.uint64(PHASE_BITS - REF_ADDR_BITS)).astype(np.int64)
    quarter_turn = 2 ** (REF_ADDR_BITS - 2)
    return _SINE[(address + quarter_turn) % 2**REF_ADDR_BITS], _SINE[address]


def _pixels(samples, samples_per_pixel: int) -> tuple[np.ndarray, int]:
    x = np.asarray(samples)
    n = max(int(samples_per_pixel), 1)  # the RTL treats 0 as 1
    count = len(x) // n
    return x[: count * n], n


def accumulate(samples, increment: int, samples_per_pixel: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer ``(I, Q)`` per complete pixel, as the RTL's accumulators dump them."""
    x, n = _pixels(samples, samples_per_pixel)
    x = x.astype(np.int64)
    lo, hi = -(2 ** (ADC_BITS - 1)), 2 ** (ADC_BITS - 1) - 1
    if x.size and (x.min() < lo or x.max() > hi):
        raise ValueError(f"samples must be signed {ADC_BITS}-bit ADC codes")
    cos, sin = nco(len(x), increment)
    i = (x * cos).reshape(-1, n).sum(axis=1)
    q = -(x * sin).reshape(-1, n).sum(axis=1)
    return i, q


def cordic_vector(x: int, y: int) -> tuple[int, int]:
    """CORDIC vectoring of ``(x, y)`` exactly as the RTL: ``(G * |x + jy|, angle in 2**-22 turn)``."""
    quarter = 2 ** (Z_BITS - 3)  # 90 deg
    if x < 0:
        x, y, z = (y, -x, quarter) if y >= 0 else (-y, x, -quarter)
    else:
        z = 0
    for i, a in enumerate(atan_table()):
        if y >= 0:
            x, y, z = x + (y >> i), y - (x >> i), z + a
        else:
            x, y, z = x - (y >> i), y + (x >> i), z - a
    return x, z


#: Largest distance between the table reference ``(cos - j sin) / REF_SCALE`` and ``exp(-j theta)``.
REFERENCE_ERROR = math.pi / 2**REF_ADDR_BITS + math.sqrt(2.0) / (2.0 * REF_SCALE)

#: CORDIC angle error: residual rotation after the last iteration plus the table rounding, deg.
CORDIC_ANGLE_ERROR = math.degrees(math.atan(2.0 ** (1 - CORDIC_ITER))) + CORDIC_ITER * 0.5 * 360.0 / 2 ** (Z_BITS - 1)


def error_bound(samples, samples_per_pixel: int, amplitude) -> tuple[np.ndarray, np.ndarray]:
    """Worst-case ``|demodulate - reference|`` per complete pixel: ``(amplitude LSB, phase deg)``.

    The table reference is within ``REFERENCE_ERROR`` of the exact one sample by sample, so the
    demodulated phasor ``(2/N) sum x r`` is within ``2 mean|x| REFERENCE_ERROR`` of the ideal
    one; the CORDIC, the divider and the output rounding add at most 0.01 LSB of amplitude and
    ``CORDIC_ANGLE_ERROR`` + half an output LSB of phase. ``amplitude`` is the reference
    amplitude of each pixel (the phase bound grows as it shrinks).
    """
    x, n = _pixels(samples, samples_per_pixel)
    mean_abs = np.abs(np.asarray(x, dtype=np.float64)).reshape(-1, n).mean(axis=1)
    phasor = 2.0 * mean_abs * REFERENCE_ERROR
    amp = phasor + 0.01
    ratio = np.clip(phasor / np.maximum(np.asarray(amplitude, dtype=np.float64), 1e-300), 0.0, 1.0)
    phase = np.rad2deg(np.arcsin(ratio)) + CORDIC_ANGLE_ERROR + 0.5 * PHASE_LSB_DEG
    return amp, phase


def _signed(value: int, bits: int) -> int:
    value &= 2**bits - 1
    return value - 2**bits if value >= 2 ** (bits - 1) else value


def demodulate_codes(samples, increment: int, samples_per_pixel: int) -> tuple[np.ndarray, np.ndarray]:
    """Bit-accurate RTL outputs per complete pixel: ``(amplitude codes, phase codes)``.

    Amplitude codes are unsigned in 2**-8 ADC LSB; phase codes are signed in 2**-16 turn.
    """
    _, n = _pixels(samples, samples_per_pixel)
    amplitude, phase = [], []
    for i, q in zip(*accumulate(samples, increment, samples_per_pixel)):
        mag, z = cordic_vector(int(i), int(q))
        quotient = mag // n
        amp = (quotient * AMP_SCALE + 2 ** (AMP_SHIFT - 1)) >> AMP_SHIFT
        if quotient >= 2 ** (ADC_BITS + REF_BITS):
            amp = 2**AMP_BITS  # the RTL keeps 32 quotient bits and saturates above them
        amplitude.append(min(amp, 2**AMP_BITS - 1))
        phase.append(_signed((z + 2 ** (ANGLE_GUARD - 1)) >> ANGLE_GUARD, ANGLE_BITS))
    return np.array(amplitude, dtype=np.int64), np.array(phase, dtype=np.int64)


def demodulate(samples, phase_increment: int, samples_per_pixel: int) -> tuple[np.ndarray, np.ndarray]:
    """What the RTL reports per complete pixel: ``(amplitude in ADC LSB, phase in deg)``.

    Args:
        samples: signed 16-bit ADC codes, the first one taken right after a clear (NCO phase 0).
        phase_increment: NCO phase increment register (``phase_increment(f)``).
        samples_per_pixel: decimation register; a trailing partial pixel is not reported.
    """
    amp, phase = demodulate_codes(samples, phase_increment, samples_per_pixel)
    return amp * AMP_LSB, phase * PHASE_LSB_DEG


def reference(samples, phase_increment: int, samples_per_pixel: int) -> tuple[np.ndarray, np.ndarray]:
    """Ideal float64 lock-in of the same samples: exact NCO phase, exact sin/cos, no rounding.

    Same boxcar over ``samples_per_pixel`` samples as the RTL, so the difference between the two
    is the fixed-point error alone. Returns ``(amplitude in input units, phase in deg (-180, 180])``.
    """
    x, n = _pixels(samples, samples_per_pixel)
    theta = 2.0 * np.pi * nco_phase(len(x), phase_increment).astype(np.float64) / 2.0**PHASE_BITS
    z = (np.asarray(x, dtype=np.float64) * np.exp(-1j * theta)).reshape(-1, n).sum(axis=1)
    return 2.0 * np.abs(z) / n, np.rad2deg(np.angle(z))


def image_leakage(phase_increment: int, samples_per_pixel: int, pixels: int = 1) -> np.ndarray:
    """Relative amplitude of the 2f image left by the boxcar, per pixel: ``|sum exp(2j theta)| / N``.

    A pure input ``A cos(theta + phi)`` reads ``A exp(j phi)`` plus at most this times ``A``
    (zero when the pixel spans a whole number of reference half periods).
    """
    n = max(int(samples_per_pixel), 1)
    theta = 2.0 * np.pi * nco_phase(n * pixels, phase_increment).astype(np.float64) / 2.0**PHASE_BITS
    return np.abs(np.exp(2j * theta).reshape(-1, n).sum(axis=1)) / n


def sinusoid(
    amplitude: float,
    phase: float,
    phase_increment: int,
    n: int,
    noise: float = 0.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """ADC codes of ``amplitude cos(theta_n + phase deg) + noise`` at the NCO's exact phase.

    Gaussian noise of rms ``noise`` (LSB), rounded to nearest and clipped to signed 16 bits.
    """
    theta = 2.0 * np.pi * nco_phase(n, phase_increment).astype(np.float64) / 2.0**PHASE_BITS
    x = amplitude * np.cos(theta + np.deg2rad(phase))
    if noise:
        x = x + noise * (rng if rng is not None else np.random.default_rng(0)).standard_normal(n)
    lo, hi = -(2 ** (ADC_BITS - 1)), 2 ** (ADC_BITS - 1) - 1
    return np.clip(np.rint(x), lo, hi).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Generated RTL: tables and constants the Verilog takes from this model.

_BANNER = (
    "// Generated by firmware/lockin_model.py. Do not edit: run `python -m firmware.lockin_model`.\n"
    "// tests/firmware/test_lockin_model.py checks the committed file is what the model generates.\n"
)


def sine_rom_verilog() -> str:
    """``lockin_sine_rom.v``: registered dual sin/cos lookup in a quarter-wave ROM."""
    q = sine_quarter_table()
    kb, mb, ab = REF_ADDR_BITS - 2, REF_BITS - 1, REF_ADDR_BITS
    init = "\n".join(f"        quarter[{k}] = {mb}'d{v};" for k, v in enumerate(q))
    return f"""{_BANNER}//
// Sine/cosine reference of the lock-in NCO: 2^{ab} points per turn, signed {REF_BITS}-bit,
// amplitude {REF_SCALE}. Entry k of the quarter wave is round({REF_SCALE} sin(2 pi (k + 0.5) / 2^{ab})):
// the half-step offset cancels the average lag of truncating the phase accumulator to
// {ab} bits. The other three quarters follow by symmetry (mirror the index in odd quarters,
// negate in the second half), and cos is the same lookup a quarter turn ahead.
// The table is a memory with initial values (a ROM for FPGA tools, and an O(1) lookup for the
// simulators: a {2**kb}-way case statement is a linear search in Icarus, 10x slower overall).
module lockin_sine_rom (
    input  wire                    clk,
    input  wire                    rst,      // synchronous, active high: outputs to 0
    input  wire                    en,       // look up addr on this edge
    input  wire        [{ab - 1}:0]     addr,     // phase, 2^-{ab} turn
    output reg  signed [{REF_BITS - 1}:0]     sin_out,  // {REF_SCALE} sin(addr), one cycle later
    output reg  signed [{REF_BITS - 1}:0]     cos_out   // {REF_SCALE} cos(addr), one cycle later
);
    reg [{mb - 1}:0] quarter [0:{2**kb - 1}];
    initial begin
{init}
    end

    wire        [{ab - 1}:0] addr_cos = addr + {ab}'d{2**kb};  // cos(p) = sin(p + quarter turn)
    // Quarters 1 and 3 run the table backwards (~k = {2**kb - 1} - k); the second half is negative.
    wire        [{kb - 1}:0] k_sin = addr[{kb}] ? ~addr[{kb - 1}:0] : addr[{kb - 1}:0];
    wire        [{kb - 1}:0] k_cos = addr_cos[{kb}] ? ~addr_cos[{kb - 1}:0] : addr_cos[{kb - 1}:0];
    wire        [{mb - 1}:0] m_sin = quarter[k_sin];
    wire        [{mb - 1}:0] m_cos = quarter[k_cos];
    wire signed [{REF_BITS - 1}:0] sin_c = addr[{ab - 1}] ? -$signed({{1'b0, m_sin}}) : $signed({{1'b0, m_sin}});
    wire signed [{REF_BITS - 1}:0] cos_c = addr_cos[{ab - 1}] ? -$signed({{1'b0, m_cos}}) : $signed({{1'b0, m_cos}});

    always @(posedge clk) begin
        if (rst) begin
            sin_out <= {REF_BITS}'sd0;
            cos_out <= {REF_BITS}'sd0;
        end else if (en) begin
            sin_out <= sin_c;
            cos_out <= cos_c;
        end
    end
endmodule
"""


def atan_rom_verilog() -> str:
    """``lockin_atan_rom.v``: the CORDIC micro-rotation angles."""
    table = atan_table()
    ib = max(1, math.ceil(math.log2(CORDIC_ITER)))
    cases = "\n".join(
        f"            {ib}'d{i}: atan = {Z_BITS - 1}'d{v};  // atan(2^-{i})" for i, v in enumerate(table)
    )
    return f"""{_BANNER}//
// CORDIC angle table of the lock-in: atan(2^-i) for i < {CORDIC_ITER}, in 2^-{Z_BITS - 1} turn
// ({ANGLE_GUARD} guard bits below the 2^-{ANGLE_BITS} turn phase output, so the rounding of all {CORDIC_ITER} entries
// together stays under 0.15 output LSB). Combinational: one entry per iteration.
module lockin_atan_rom (
    input  wire [{ib - 1}:0]  i,     // iteration index
    output reg  [{Z_BITS - 2}:0] atan   // atan(2^-i), 2^-{Z_BITS - 1} turn
);
    always @(*) begin
        case (i)
{cases}
            default: atan = {Z_BITS - 1}'d0;
        endcase
    end
endmodule
"""


def consts_verilog() -> str:
    """``lockin_consts.vh``: fixed-point constants tied to the generated tables."""
    return f"""{_BANNER}`ifndef LOCKIN_CONSTS_VH
`define LOCKIN_CONSTS_VH

`define LOCKIN_REF_ADDR_BITS {REF_ADDR_BITS}   // sine table: 2^{REF_ADDR_BITS} points per turn
`define LOCKIN_REF_BITS {REF_BITS}        // signed reference, amplitude {REF_SCALE}
`define LOCKIN_ANGLE_BITS {ANGLE_BITS}      // phase output: signed, 2^-{ANGLE_BITS} turn per LSB
`define LOCKIN_ANGLE_GUARD {ANGLE_GUARD}      // CORDIC angle bits below the output LSB
`define LOCKIN_CORDIC_ITER {CORDIC_ITER}     // CORDIC iterations (gain {cordic_gain():.12f})
`define LOCKIN_CORDIC_ITER_BITS {max(1, math.ceil(math.log2(CORDIC_ITER)))}
`define LOCKIN_AMP_FRAC {AMP_FRAC}         // amplitude fraction bits (ADC LSB)
`define LOCKIN_AMP_SHIFT {AMP_SHIFT}       // amplitude = (q * AMP_SCALE + 2^(SHIFT-1)) >> SHIFT
`define LOCKIN_AMP_SCALE {AMP_SCALE}  // round(2^{AMP_SHIFT} * 2^{AMP_FRAC} * 2 / (G * {REF_SCALE}))

`endif
"""


def generated_files() -> dict[str, str]:
    """RTL file name (in ``firmware/rtl``) -> text the model generates."""
    return {
        "lockin_sine_rom.v": sine_rom_verilog(),
        "lockin_atan_rom.v": atan_rom_verilog(),
        "lockin_consts.vh": consts_verilog(),
    }


def write_rtl(folder: Path = RTL) -> list[Path]:
    """Write the generated tables and constants into ``folder``."""
    paths = []
    for name, text in generated_files().items():
        path = folder / name
        path.write_text(text)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in write_rtl():
        print(p)
