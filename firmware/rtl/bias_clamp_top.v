// Test top for bias_clamp: LANES copies side by side on packed buses, so an exhaustive sweep
// of all 2^16 amplitude codes takes 2^16 / LANES simulator round trips instead of 2^16
// (each cocotb write + Timer costs tens of microseconds of wall time). Wider is not faster on
// Icarus 11: every lane's output rewrites the whole packed bus, so the cost per round trip grows
// with LANES squared; 64 lanes measured 0.4 s per sweep, 256 lanes 1.8 s. Every lane is the
// same bias_clamp with the same clamp register, so lane i checks code (base + i).
`timescale 1ns/1ps
`include "pfm_spec.vh"

module bias_clamp_top #(
    parameter integer LANES      = 64,
    parameter integer WIDTH      = `PFM_DAC_BITS,
    parameter integer CLAMP_BITS = `PFM_DAC_BITS
) (
    input  wire [LANES*WIDTH-1:0]  codes_in,   // lane i in bits [i*WIDTH +: WIDTH]
    input  wire [CLAMP_BITS-1:0]   clamp,
    output wire [LANES*WIDTH-1:0]  codes_out
);
    genvar i;
    generate
        for (i = 0; i < LANES; i = i + 1) begin : lane
            bias_clamp #(.WIDTH(WIDTH), .CLAMP_BITS(CLAMP_BITS)) u_clamp (
                .code_in(codes_in[i*WIDTH +: WIDTH]),
                .clamp(clamp),
                .code_out(codes_out[i*WIDTH +: WIDTH])
            );
        end
    endgenerate
endmodule
