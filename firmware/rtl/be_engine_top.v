// Simulation top for be_engine: the 100 MHz clock and an edge counter in HDL (cocotb stays off
// the per-cycle path). Simulation only; the engine itself is synthesizable.
`timescale 1ns/1ps
`include "pfm_spec.vh"

module be_engine_top #(
    parameter integer DEPTH = 256
) (
    output reg                              clk,
    output reg  [63:0]                      cycle,
    input  wire                             rst,
    input  wire                             table_we,
    input  wire [$clog2(DEPTH)-1:0]         table_addr,
    input  wire signed [`PFM_DAC_BITS-1:0]  table_data,
    input  wire [$clog2(DEPTH):0]           length,
    input  wire [15:0]                      repeats,
    input  wire                             start,
    output wire signed [`PFM_DAC_BITS-1:0]  drive,
    output wire                             adc_strobe,
    input  wire signed [`PFM_ADC_BITS-1:0]  adc_data,
    input  wire [$clog2(DEPTH)-1:0]         capture_addr,
    output wire signed [31:0]               capture_data,
    output wire                             busy,
    output wire                             done
);
    initial clk = 1'b0;
    always #(500000000.0 / `PFM_CLOCK_HZ) clk = ~clk;
    initial cycle = 64'd0;
    always @(posedge clk) cycle <= cycle + 64'd1;

    be_engine #(.DEPTH(DEPTH)) dut (
        .clk(clk), .rst(rst), .table_we(table_we), .table_addr(table_addr), .table_data(table_data),
        .length(length), .repeats(repeats), .start(start), .drive(drive), .adc_strobe(adc_strobe),
        .adc_data(adc_data), .capture_addr(capture_addr), .capture_data(capture_data), .busy(busy), .done(done));
endmodule
