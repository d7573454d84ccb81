// Simulation top for scan_gen: generates the FPGA clock in HDL so cocotb stays off the
// per-cycle path (TOOLCHAIN.md: a Python clock is 4x slower). Simulation only, hence the
// `initial` blocks; the DUT itself is synthesizable.
`timescale 1ns/1ps
`include "pfm_spec.vh"

module scan_gen_top #(
    parameter integer DAC_BITS   = `PFM_DAC_BITS,
    parameter integer INDEX_BITS = 16,
    parameter integer COUNT_BITS = 32
) (
    output reg                   clk,
    output reg  [63:0]           cycle,         // rising clock edges so far
    input  wire                  rst,
    input  wire                  start,
    input  wire [INDEX_BITS-1:0] points,
    input  wire [INDEX_BITS-1:0] lines,
    input  wire [COUNT_BITS-1:0] pixel_cycles,
    input  wire                  retrace,
    input  wire [DAC_BITS-1:0]   x_origin,
    input  wire [DAC_BITS-1:0]   x_step,
    input  wire [DAC_BITS-1:0]   y_origin,
    input  wire [DAC_BITS-1:0]   y_step,
    output wire [DAC_BITS-1:0]   x_code,
    output wire [DAC_BITS-1:0]   y_code,
    output wire [INDEX_BITS-1:0] ix,
    output wire [INDEX_BITS-1:0] iy,
    output wire                  reverse,
    output wire                  pixel,
    output wire                  line_start,
    output wire                  busy,
    output wire                  done,
    output wire                  err_busy,
    output wire                  err_config
);
    initial clk = 1'b0;
    always #(500000000.0 / `PFM_CLOCK_HZ) clk = ~clk;  // half period in ns: 5 at 100 MHz

    // Edge counter for the monitors: they read it when a strobe changes instead of counting
    // clock edges in Python, which keeps cocotb off the per-cycle path.
    initial cycle = 64'd0;
    always @(posedge clk) cycle <= cycle + 64'd1;

    scan_gen #(.DAC_BITS(DAC_BITS), .INDEX_BITS(INDEX_BITS), .COUNT_BITS(COUNT_BITS)) dut (
        .clk(clk), .rst(rst), .start(start), .points(points), .lines(lines),
        .pixel_cycles(pixel_cycles), .retrace(retrace), .x_origin(x_origin), .x_step(x_step),
        .y_origin(y_origin), .y_step(y_step), .x_code(x_code), .y_code(y_code), .ix(ix),
        .iy(iy), .reverse(reverse), .pixel(pixel), .line_start(line_start), .busy(busy),
        .done(done), .err_busy(err_busy), .err_config(err_config)
    );
endmodule
