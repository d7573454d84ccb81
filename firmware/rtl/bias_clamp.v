// Bias amplitude clamp: the last word on what code reaches the bias DAC.
//
// |code_out| <= min(clamp, FULL_SCALE) for every input, so no register value (amplitude or
// clamp) can drive the tip beyond the clamp or beyond the amplifier's +-bias_range. The
// output is symmetric: -2^(W-1) (one code beyond -FULL_SCALE) is clipped to -limit like any
// other negative code, because the twin's DAC model (twin.fpga.FpgaTiming.bias_code) never
// emits it.
//
// Purely combinational, so the pulse generator can apply it on its output register path and
// a clamp-register write takes effect on the very next clock.
`include "pfm_spec.vh"

module bias_clamp #(
    parameter integer WIDTH      = `PFM_DAC_BITS,        // DAC code width (signed)
    parameter integer CLAMP_BITS = `PFM_DAC_BITS,        // clamp register width (unsigned)
    parameter integer FULL_SCALE = `PFM_DAC_FULL_SCALE   // code of +bias_range
) (
    input  wire signed [WIDTH-1:0]      code_in,  // requested amplitude code
    input  wire        [CLAMP_BITS-1:0] clamp,    // clamp register: largest |code| allowed
    output wire signed [WIDTH-1:0]      code_out  // clamped code for the DAC
);
    // Work one bit wider than both operands: -2^(WIDTH-1) has no positive twin in WIDTH bits,
    // and a clamp register wider than the code must not be truncated before it is compared.
    localparam integer XW = ((CLAMP_BITS > WIDTH) ? CLAMP_BITS : WIDTH) + 1;

    localparam [XW-1:0] FULL = FULL_SCALE[XW-1:0];  // XW > DAC bits: no value is lost
    wire [XW-1:0] clampx = {{(XW-CLAMP_BITS){1'b0}}, clamp};
    // Effective limit: the clamp register can only narrow the range, never widen it.
    wire [XW-1:0] limit = (clampx < FULL) ? clampx : FULL;

    wire          negative  = code_in[WIDTH-1];
    wire [XW-1:0] code_ext  = {{(XW-WIDTH){code_in[WIDTH-1]}}, code_in};  // sign-extended
    wire [XW-1:0] magnitude = negative ? (~code_ext + 1'b1) : code_ext;   // exact, even for -2^(W-1)
    wire [XW-1:0] mag_out   = (magnitude > limit) ? limit : magnitude;
    // mag_out <= FULL_SCALE < 2^(WIDTH-1), so the low WIDTH bits hold the whole signed result
    // and the bits above them are only sign copies.
    /* verilator lint_off UNUSEDSIGNAL */
    wire [XW-1:0] signed_out = negative ? (~mag_out + 1'b1) : mag_out;
    /* verilator lint_on UNUSEDSIGNAL */
    assign code_out = signed_out[WIDTH-1:0];
endmodule
