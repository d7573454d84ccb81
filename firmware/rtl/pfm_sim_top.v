// Simulation top for pfm_top: the 100 MHz clock and an edge counter in HDL, and the host's side
// of the serial cable (a uart_tx sending the host's bytes, a uart_rx receiving the answers), so
// cocotb deals in bytes, not bits, and stays off the per-cycle path (TOOLCHAIN.md).
// Used by the top-level testbench and by `pfmtwin cosim`. Simulation only (`initial` blocks,
// file I/O); pfm_top itself is synthesizable.
//
// ADC samples come from the adc_data port (cocotb sets it at every adc_strobe: two Python
// wake-ups per sample) or, with adc_mem_on, from a sample memory that cocotb fills once per
// scan from a file ($readmemh at an adc_mem_load cycle). The memory also records the scanner DAC
// codes at every sample taken, written out at an adc_mem_dump cycle ($writememh). Fed from
// memory, a scan runs without Python on the per-sample path.
`timescale 1ns/1ps
`include "pfm_spec.vh"

module pfm_sim_top #(
    parameter integer CLKS_PER_BIT = `PFM_UART_CLKS_PER_BIT,
    parameter integer ADC_DIV      = `PFM_ADC_DIV,
    parameter integer ADC_MEM_DEPTH = 1 << 17,        // samples the memory holds (one scan's)
    parameter integer FILE_CHARS    = 256            // longest file name of the memory's files
) (
    output reg                              clk,
    output reg  [63:0]                      cycle,       // rising clock edges so far
    input  wire                             rst,
    // host -> controller bytes: held in host_tx_byte while host_tx_valid, taken when ready
    input  wire                             host_tx_valid,
    input  wire [7:0]                       host_tx_byte,
    output wire                             host_tx_ready,
    // controller -> host bytes
    output wire                             host_rx_valid,
    output wire [7:0]                       host_rx_byte,
    // analog side
    input  wire signed [`PFM_ADC_BITS-1:0]  adc_data,
    output wire                             adc_strobe,
    output wire        [`PFM_DAC_BITS-1:0]  x_dac,
    output wire        [`PFM_DAC_BITS-1:0]  y_dac,
    output wire signed [`PFM_DAC_BITS-1:0]  bias_dac,
    output wire signed [`PFM_DAC_BITS-1:0]  drive_dac,
    output wire                             bias_on,
    output wire                             pixel_valid,
    output wire        [23:0]               pixel_amplitude,
    output wire signed [15:0]               pixel_phase,
    output wire        [31:0]               pixel_count,
    output wire                             command,
    // the sample memory (simulation only)
    input  wire                             adc_mem_on,     // 1: samples from the memory
    input  wire                             adc_mem_load,   // a cycle high: read count samples from samples_file
    input  wire                             adc_mem_dump,   // a cycle high: write the taken samples' DAC codes
    input  wire [31:0]                      adc_mem_count,  // samples in samples_file
    input  wire [8*FILE_CHARS-1:0]          samples_file,   // file names, as Verilog strings
    input  wire [8*FILE_CHARS-1:0]          positions_file,
    output reg  [31:0]                      adc_mem_taken   // samples taken since the last load
);
    initial clk = 1'b0;
    always #(500000000.0 / `PFM_CLOCK_HZ) clk = ~clk;  // half period in ns: 5 at 100 MHz
    initial cycle = 64'd0;
    always @(posedge clk) cycle <= cycle + 64'd1;

    wire line_to_fpga, line_to_host;
    /* verilator lint_off PINCONNECTEMPTY */
    uart_tx #(.CLKS_PER_BIT(CLKS_PER_BIT)) host_tx (
        .clk(clk), .rst(rst), .in_valid(host_tx_valid), .in_byte(host_tx_byte),
        .in_ready(host_tx_ready), .tx(line_to_fpga));
    uart_rx #(.CLKS_PER_BIT(CLKS_PER_BIT)) host_rx (
        .clk(clk), .rst(rst), .rx(line_to_host), .out_valid(host_rx_valid),
        .out_byte(host_rx_byte), .framing_error());
    /* verilator lint_on PINCONNECTEMPTY */

    localparam integer MEM_W = $clog2(ADC_MEM_DEPTH);
    // One hex word per sample (two's complement); one {x_dac, y_dac} word per sample taken.
    reg signed [`PFM_ADC_BITS-1:0]  samples   [0:ADC_MEM_DEPTH-1];
    reg [2*`PFM_DAC_BITS-1:0]       positions [0:ADC_MEM_DEPTH-1];
    wire signed [`PFM_ADC_BITS-1:0] adc_in =
        !adc_mem_on ? adc_data : (adc_mem_taken < adc_mem_count ? samples[adc_mem_taken[MEM_W-1:0]] : {`PFM_ADC_BITS{1'b0}});
    initial adc_mem_taken = 32'd0;
    always @(posedge clk) begin
        if (adc_mem_load) begin
            if (adc_mem_count > ADC_MEM_DEPTH) begin
                $display("pfm_sim_top: %0d samples do not fit the sample memory (%0d)", adc_mem_count, ADC_MEM_DEPTH);
                $finish;
            end
            if (adc_mem_count > 0) $readmemh(samples_file, samples, 0, adc_mem_count - 1);
            adc_mem_taken <= 32'd0;
        end else if (adc_mem_on && adc_strobe) begin
            if (adc_mem_taken < ADC_MEM_DEPTH) positions[adc_mem_taken[MEM_W-1:0]] <= {x_dac, y_dac};
            adc_mem_taken <= adc_mem_taken + 32'd1;
        end
        if (adc_mem_dump && adc_mem_taken > 0) $writememh(positions_file, positions, 0, adc_mem_taken - 1);
    end

    pfm_top #(.CLKS_PER_BIT(CLKS_PER_BIT), .ADC_DIV(ADC_DIV)) dut (
        .clk(clk), .rst(rst), .uart_rxd(line_to_fpga), .uart_txd(line_to_host),
        .adc_data(adc_in), .adc_strobe(adc_strobe), .x_dac(x_dac), .y_dac(y_dac),
        .bias_dac(bias_dac), .drive_dac(drive_dac), .bias_on(bias_on), .pixel_valid(pixel_valid),
        .pixel_amplitude(pixel_amplitude), .pixel_phase(pixel_phase), .pixel_count(pixel_count),
        .command(command));
endmodule
