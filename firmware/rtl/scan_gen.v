// Raster scan generator: X/Y DAC ramps with pixel-quantized timing.
//
// Timing contract (what twin.fpga.FpgaTiming / TwinMicroscope._scan model):
//   a pixel lasts exactly pixel_cycles clock cycles (FpgaTiming.pixel_cycles(rate, points)),
//   a trace pass lasts points * pixel_cycles cycles (FpgaTiming.line_period * clock), and lines
//   follow each other with no dead cycles, so line k starts k * line period after line 0
//   (twin: line_times = start + k * per_line). With retrace each line also runs back over the
//   same pixels in reverse order, and a line takes two passes (twin: per_line = 2 * period).
//   The host, not this block, turns a line rate into pixel_cycles: a divider here would cost
//   area and could round differently from the twin.
//
// start sampled high at edge s0 (while idle, with legal settings) -> from edge s0 on, line 0
// pixel 0 is on the DACs and line_start is high for that first cycle. The strobes are registers
// set one edge ahead (not decoded from the counters), so they never glitch, even in zero-delay
// simulation where a decode would pulse while the counters update, and they stay aligned with
// x_code/y_code:
//   line_start: first cycle of each line (trace pass, pixel 0)
//   pixel:      last cycle of each pixel period (x_code still holds that pixel's position)
//   done:       one cycle after the last pixel of the last line; busy falls with it.
// x_code = x_origin + ix * x_step, y_code = y_origin + iy * y_step (unsigned DAC codes; the host
// chooses origin and step so the ramp stays within the DAC range: the sums wrap otherwise).
// A start with zero points, lines or pixel_cycles is refused (err_config, sticky until rst or
// the next accepted start); a start while busy is ignored and flags err_busy.
module scan_gen #(
    parameter integer DAC_BITS   = 16,  // scanner DAC code width
    parameter integer INDEX_BITS = 16,  // points per line / lines per image counters
    parameter integer COUNT_BITS = 32   // pixel period counter
) (
    input  wire                  clk,
    input  wire                  rst,           // synchronous, active high
    input  wire                  start,         // 1-cycle start request
    input  wire [INDEX_BITS-1:0] points,        // pixels per line (>= 1)
    input  wire [INDEX_BITS-1:0] lines,         // lines per image (>= 1)
    input  wire [COUNT_BITS-1:0] pixel_cycles,  // clock cycles per pixel (>= 1)
    input  wire                  retrace,       // also run each line back
    input  wire [DAC_BITS-1:0]   x_origin,      // x code of pixel 0
    input  wire [DAC_BITS-1:0]   x_step,        // x code increment per pixel
    input  wire [DAC_BITS-1:0]   y_origin,      // y code of line 0
    input  wire [DAC_BITS-1:0]   y_step,        // y code increment per line
    output reg  [DAC_BITS-1:0]   x_code,
    output reg  [DAC_BITS-1:0]   y_code,
    output reg  [INDEX_BITS-1:0] ix,            // pixel index along the line (reversed on retrace)
    output reg  [INDEX_BITS-1:0] iy,            // line index
    output reg                   reverse,       // in the retrace pass
    output reg                   pixel,         // last cycle of a pixel
    output reg                   line_start,    // first cycle of a line
    output reg                   busy,
    output reg                   done,
    output reg                   err_busy,      // sticky: start while busy
    output reg                   err_config     // sticky: start with a zero setting
);
    // Settings are latched at start so register writes during a scan cannot tear a line.
    reg [COUNT_BITS-1:0] period_m1;
    reg [INDEX_BITS-1:0] last_ix, last_iy;
    reg [DAC_BITS-1:0]   x0, dx, dy;
    reg                  do_retrace;
    reg [COUNT_BITS-1:0] count;  // cycle within the pixel

    wire config_ok = (points != {INDEX_BITS{1'b0}}) && (lines != {INDEX_BITS{1'b0}})
                   && (pixel_cycles != {COUNT_BITS{1'b0}});
    wire pixel_end = busy && (count == period_m1);  // this cycle ends a pixel (== pixel)
    wire pass_end  = pixel_end && (reverse ? (ix == {INDEX_BITS{1'b0}}) : (ix == last_ix));
    wire one_cycle_pixels = (period_m1 == {COUNT_BITS{1'b0}});

    always @(posedge clk) begin
        done       <= 1'b0;
        line_start <= 1'b0;
        if (rst) begin
            pixel      <= 1'b0;
            busy       <= 1'b0;
            count      <= {COUNT_BITS{1'b0}};
            period_m1  <= {COUNT_BITS{1'b0}};
            last_ix    <= {INDEX_BITS{1'b0}};
            last_iy    <= {INDEX_BITS{1'b0}};
            x0         <= {DAC_BITS{1'b0}};
            dx         <= {DAC_BITS{1'b0}};
            dy         <= {DAC_BITS{1'b0}};
            do_retrace <= 1'b0;
            x_code     <= {DAC_BITS{1'b0}};
            y_code     <= {DAC_BITS{1'b0}};
            ix         <= {INDEX_BITS{1'b0}};
            iy         <= {INDEX_BITS{1'b0}};
            reverse    <= 1'b0;
            err_busy   <= 1'b0;
            err_config <= 1'b0;
        end else if (!busy) begin
            if (start) begin
                if (config_ok) begin
                    period_m1  <= pixel_cycles - 1'b1;
                    last_ix    <= points - 1'b1;
                    last_iy    <= lines - 1'b1;
                    x0         <= x_origin;
                    dx         <= x_step;
                    dy         <= y_step;
                    do_retrace <= retrace;
                    x_code     <= x_origin;
                    y_code     <= y_origin;
                    ix         <= {INDEX_BITS{1'b0}};
                    iy         <= {INDEX_BITS{1'b0}};
                    reverse    <= 1'b0;
                    count      <= {COUNT_BITS{1'b0}};
                    busy       <= 1'b1;
                    err_config <= 1'b0;
                    line_start <= 1'b1;
                    pixel      <= (pixel_cycles == {{(COUNT_BITS-1){1'b0}}, 1'b1});
                end else begin
                    err_config <= 1'b1;
                end
            end
        end else begin
            if (start) err_busy <= 1'b1;
            if (!pixel_end) begin
                count <= count + 1'b1;
                pixel <= (count + 1'b1 == period_m1);
            end else begin
                count <= {COUNT_BITS{1'b0}};
                pixel <= one_cycle_pixels;  // overridden below when the scan ends
                if (!pass_end) begin
                    // Next pixel of this pass.
                    if (reverse) begin
                        ix     <= ix - 1'b1;
                        x_code <= x_code - dx;
                    end else begin
                        ix     <= ix + 1'b1;
                        x_code <= x_code + dx;
                    end
                end else if (do_retrace && !reverse) begin
                    // Trace done: run back over the same pixels; the last one is revisited first.
                    reverse <= 1'b1;
                end else if (iy == last_iy) begin
                    // Last pass of the last line: hold the final position, as the twin does.
                    busy  <= 1'b0;
                    done  <= 1'b1;
                    pixel <= 1'b0;
                end else begin
                    // Next line: x back to the origin, y one step on.
                    reverse    <= 1'b0;
                    ix         <= {INDEX_BITS{1'b0}};
                    x_code     <= x0;
                    line_start <= 1'b1;
                    iy         <= iy + 1'b1;
                    y_code     <= y_code + dy;
                end
            end
        end
    end
endmodule
