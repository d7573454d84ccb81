// Simulation top for pulse_gen: generates the 100 MHz clock in HDL so cocotb stays off the
// per-cycle path (TOOLCHAIN.md: a Python clock is 4x slower). Simulation only, hence the
// `initial` blocks; the DUT itself is synthesizable.
`timescale 1ns/1ps
`include "pfm_spec.vh"

module pulse_gen_top (
    output reg                             clk,
    output reg  [63:0]                     cycle,      // rising clock edges so far
    input  wire                            rst,
    input  wire                            trigger,
    input  wire signed [`PFM_DAC_BITS-1:0] amplitude,
    input  wire        [`PFM_DAC_BITS-1:0] clamp,
    input  wire        [31:0]              width,
    input  wire                            err_clear,
    output wire signed [`PFM_DAC_BITS-1:0] bias_code,
    output wire                            bias_on,
    output wire                            active,
    output wire                            done,
    output wire                            err_busy,
    output wire                            err_width
);
    initial clk = 1'b0;
    always #(500000000.0 / `PFM_CLOCK_HZ) clk = ~clk;  // half period in ns: 5 at 100 MHz

    // Edge counter for the monitors: they read it when a strobe changes instead of counting
    // clock edges in Python, which keeps cocotb off the per-cycle path.
    initial cycle = 64'd0;
    always @(posedge clk) cycle <= cycle + 64'd1;

    pulse_gen dut (
        .clk(clk), .rst(rst), .trigger(trigger), .amplitude(amplitude), .clamp(clamp),
        .width(width), .err_clear(err_clear), .bias_code(bias_code), .bias_on(bias_on),
        .active(active), .done(done), .err_busy(err_busy), .err_width(err_width)
    );
endmodule
