// Numerically controlled oscillator of the lock-in: a phase accumulator and a sin/cos table.
//
// `phase` is the reference phase (2^-PHASE_W turn) of the sample taken on the next `advance`;
// on that edge the table looks up its top bits and the accumulator steps by `phase_inc`, so
// sample n after a clear is mixed with phase n * phase_inc (mod 2^PHASE_W), one cycle later on
// ref_cos/ref_sin. The accumulator advances per ADC sample, not per clock, so the reference
// frequency is phase_inc / 2^PHASE_W * adc_rate whatever the spacing of sample_valid, and the
// phase it puts out with the drive (ref_cos) is the one the lock-in measures against.
`include "lockin_consts.vh"

module nco #(
    parameter integer PHASE_W = 32                    // accumulator width
) (
    input  wire                             clk,
    input  wire                             rst,      // synchronous, active high
    input  wire                             clear,    // phase back to 0 (scan start)
    input  wire                             advance,  // one ADC sample taken
    input  wire        [PHASE_W-1:0]        phase_inc,
    output reg         [PHASE_W-1:0]        phase,    // phase of the next sample
    output wire signed [`LOCKIN_REF_BITS-1:0] ref_cos, // 32767 cos(phase of the last sample)
    output wire signed [`LOCKIN_REF_BITS-1:0] ref_sin  // 32767 sin(phase of the last sample)
);
    always @(posedge clk) begin
        if (rst || clear)
            phase <= {PHASE_W{1'b0}};
        else if (advance)
            phase <= phase + phase_inc;
    end

    // Truncation to the table address: the table's half-step offset removes the mean lag.
    lockin_sine_rom u_rom (
        .clk(clk), .rst(rst), .en(advance),
        .addr(phase[PHASE_W-1 -: `LOCKIN_REF_ADDR_BITS]),
        .sin_out(ref_sin), .cos_out(ref_cos)
    );
endmodule
