// Band-excitation engine: a waveform player and a capture buffer, both at the ADC rate.
//
// The host writes one period of the excitation (LENGTH samples of the drive DAC code, computed
// from the band: firmware/be_model.py) into the table, then starts it. The player steps through
// the table once per ADC sample, REPEATS times over; at ADC sample k it puts table[k mod LENGTH]
// on the drive DAC and takes the deflection ADC's sample, which the capture buffer adds into
// capture[k mod LENGTH]: REPEATS periods summed, the average response to one period, read back
// word by word. The host divides the spectrum of the capture by that of the table: the
// response per frequency bin (the bins are the table's harmonics, ADC rate / LENGTH apart).
//
// Timing, counted from the clock edge s that sees start: the capture is zeroed over LENGTH
// cycles, then ADC sample k is taken at the edge s + LENGTH + (k + 1) * ADC_DIV (adc_strobe high
// in the cycle before it); the drive DAC shows table word k mod LENGTH from the edge
// s + LENGTH + k * ADC_DIV until the next sample's, and 0 after the last; done rises at the edge
// of the last sample. Table writes while busy are ignored.
`include "pfm_spec.vh"

module be_engine #(
    parameter integer DEPTH   = 4096,          // table and capture words
    parameter integer ADC_DIV = `PFM_ADC_DIV   // clock cycles per ADC sample
) (
    input  wire                              clk,
    input  wire                              rst,
    // the table, written by the host while idle
    input  wire                              table_we,
    input  wire [$clog2(DEPTH)-1:0]          table_addr,
    input  wire signed [`PFM_DAC_BITS-1:0]   table_data,
    input  wire [$clog2(DEPTH):0]            length,      // samples per period, 1..DEPTH
    input  wire [15:0]                       repeats,     // periods played and summed, >= 1
    input  wire                              start,       // one cycle: play (ignored while busy)
    // the analog side
    output reg  signed [`PFM_DAC_BITS-1:0]   drive,       // drive DAC code
    output wire                              adc_strobe,  // adc_data is taken in this cycle
    input  wire signed [`PFM_ADC_BITS-1:0]   adc_data,
    // the capture, read by the host when done
    input  wire [$clog2(DEPTH)-1:0]          capture_addr,
    output wire signed [31:0]                capture_data,
    output reg                               busy,
    output reg                               done         // high from the end of play to the next start
);
    localparam integer AW = $clog2(DEPTH);
    localparam integer DIV_W = $clog2(ADC_DIV + 1);
    localparam [DIV_W-1:0] DIV_LAST = ADC_DIV - 1;

    reg signed [`PFM_DAC_BITS-1:0] wave [0:DEPTH-1];
    reg signed [31:0]              capture [0:DEPTH-1];
    reg [AW-1:0]    index;     // table word of the current sample
    reg [15:0]      period;    // periods completed
    reg [DIV_W-1:0] div;
    reg             clearing;  // zeroing the capture before a play
    reg [AW:0]      clear_at;

    assign adc_strobe = busy && !clearing && (div == DIV_LAST);
    assign capture_data = capture[capture_addr];

    wire last_word = ({1'b0, index} == length - 1'b1);

    always @(posedge clk) begin
        if (table_we && !busy) wave[table_addr] <= table_data;
        if (rst) begin
            busy <= 1'b0;
            done <= 1'b0;
            drive <= {`PFM_DAC_BITS{1'b0}};
            clearing <= 1'b0;
        end else if (start && !busy && length != 0 && length <= DEPTH && repeats != 0) begin
            // Zero the capture first (one word per cycle), then play.
            busy <= 1'b1;
            done <= 1'b0;
            clearing <= 1'b1;
            clear_at <= {(AW + 1){1'b0}};
        end else if (clearing) begin
            capture[clear_at[AW-1:0]] <= 32'sd0;
            if (clear_at == length - 1'b1) begin
                clearing <= 1'b0;
                index <= {AW{1'b0}};
                period <= 16'd0;
                div <= {DIV_W{1'b0}};
                drive <= wave[0];
            end
            clear_at <= clear_at + 1'b1;
        end else if (busy) begin
            div <= (div == DIV_LAST) ? {DIV_W{1'b0}} : div + 1'b1;
            if (adc_strobe) begin
                capture[index] <= capture[index] + {{(32 - `PFM_ADC_BITS){adc_data[`PFM_ADC_BITS-1]}}, adc_data};
                if (last_word) begin
                    index <= {AW{1'b0}};
                    if (period == repeats - 1'b1) begin
                        busy <= 1'b0;
                        done <= 1'b1;
                        drive <= {`PFM_DAC_BITS{1'b0}};
                    end else begin
                        period <= period + 1'b1;
                        drive <= wave[0];
                    end
                end else begin
                    index <= index + 1'b1;
                    drive <= wave[index + 1'b1];
                end
            end
        end
    end
endmodule
