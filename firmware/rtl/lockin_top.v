// Simulation top for lockin: generates the 100 MHz clock and the ADC sample strobe in HDL so
// cocotb stays off the per-cycle path (TOOLCHAIN.md). The testbench writes the next ADC code
// to adc_data after each rising edge of sample_valid; the lock-in takes it on the next clock.
// SAMPLE_DIV clocks per sample (25 is the real 4 MHz ADC; fewer keeps simulations short: the
// NCO steps per sample, so the phase increment, f / adc_rate * 2^32, is the same).
// Not synthesizable, by design.
`timescale 1ns/1ps
`include "pfm_spec.vh"
`include "lockin_consts.vh"

module lockin_top #(
    parameter integer SAMPLE_DIV = 4   // clocks per ADC sample, >= 2
) (
    output reg                             clk,
    input  wire                            rst,
    input  wire                            clear,
    input  wire                            feed,          // produce sample strobes
    input  wire        [31:0]              phase_inc,
    input  wire        [15:0]              samples_per_pixel,
    input  wire signed [`PFM_ADC_BITS-1:0] adc_data,
    output reg                             sample_valid,
    output wire        [23:0]              amplitude,
    output wire signed [`LOCKIN_ANGLE_BITS-1:0] phase,
    output wire                            out_valid,
    output wire signed [`LOCKIN_REF_BITS-1:0]   ref_cos,
    output wire                            overrun
);
    initial clk = 1'b0;
    always #(500000000.0 / `PFM_CLOCK_HZ) clk = ~clk;  // half period in ns: 5 at 100 MHz

    localparam [15:0] DIV_LAST = SAMPLE_DIV[15:0] - 16'd1;

    reg [15:0] div_count;
    always @(posedge clk) begin
        if (rst || !feed) begin
            div_count    <= 16'd0;
            sample_valid <= 1'b0;
        end else begin
            div_count    <= (div_count == DIV_LAST) ? 16'd0 : div_count + 16'd1;
            sample_valid <= (div_count == DIV_LAST);
        end
    end

    lockin #(.DEC_W(16), .AMP_W(24)) dut (
        .clk(clk), .rst(rst), .clear(clear), .phase_inc(phase_inc),
        .samples_per_pixel(samples_per_pixel), .sample(adc_data), .sample_valid(sample_valid),
        .amplitude(amplitude), .phase(phase), .out_valid(out_valid), .ref_cos(ref_cos),
        .overrun(overrun)
    );
endmodule
