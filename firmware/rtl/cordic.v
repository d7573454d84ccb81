// Iterative CORDIC in vectoring mode: magnitude and angle of (x_in, y_in), one micro-rotation
// per clock (the lock-in needs one result per pixel, so a single adder set beats a pipeline).
//
// start (while idle) loads the vector; a pre-rotation by -+90 deg brings it into the right half
// plane, where ITER rotations by -+atan(2^-i) drive y to 0 and accumulate the angle. done pulses
// ITER + 1 cycles after start; then
//   mag   = G * |x_in + j y_in| (G = prod sqrt(1 + 2^-2i) ~ 1.6468, not compensated here),
//   angle = atan2(y_in, x_in) in 2^-(Z_W-1) turn, in about [-1/2, 1/2] turn (may pass +-1/2 by
//           the CORDIC residual; the caller wraps).
// Both hold until the next start. Shifts are arithmetic (floor), exactly as the Python model.
`include "lockin_consts.vh"

module cordic #(
    parameter integer IN_W   = 48,                         // signed input width
    parameter integer Z_W    = `LOCKIN_ANGLE_BITS + `LOCKIN_ANGLE_GUARD + 1,  // angle register
    parameter integer ITER   = `LOCKIN_CORDIC_ITER,        // micro-rotations (atan table size)
    parameter integer ITER_W = `LOCKIN_CORDIC_ITER_BITS    // iteration counter width
) (
    input  wire                   clk,
    input  wire                   rst,     // synchronous, active high
    input  wire                   start,   // load x_in, y_in (ignored while busy)
    input  wire signed [IN_W-1:0] x_in,
    input  wire signed [IN_W-1:0] y_in,
    output reg                    busy,
    output reg                    done,    // one-cycle pulse: mag and angle are valid
    output wire       [IN_W+1:0]  mag,     // G |v|, unsigned
    output reg  signed [Z_W-1:0]  angle
);
    // Two extra bits: the pre-rotation may negate -2^(IN_W-1), and the gain G sqrt(2) < 4.
    localparam integer W = IN_W + 2;
    localparam signed [Z_W-1:0] QUARTER = 1 <<< (Z_W - 3);  // 90 deg

    localparam [ITER_W-1:0] LAST = ITER[ITER_W-1:0] - 1'b1;

    reg signed [W-1:0]  x, y;
    reg        [ITER_W-1:0] iter;

    wire signed [W-1:0] xe = {{2{x_in[IN_W-1]}}, x_in};
    wire signed [W-1:0] ye = {{2{y_in[IN_W-1]}}, y_in};
    wire signed [W-1:0] x_shift = x >>> iter;
    wire signed [W-1:0] y_shift = y >>> iter;

    wire [Z_W-2:0] atan_i;
    lockin_atan_rom u_atan (.i(iter), .atan(atan_i));
    wire signed [Z_W-1:0] step = $signed({1'b0, atan_i});

    assign mag = x;  // x >= 0 after the pre-rotation and stays so

    always @(posedge clk) begin
        done <= 1'b0;
        if (rst) begin
            busy  <= 1'b0;
            iter  <= {ITER_W{1'b0}};
            x     <= {W{1'b0}};
            y     <= {W{1'b0}};
            angle <= {Z_W{1'b0}};
        end else if (!busy) begin
            if (start) begin
                busy <= 1'b1;
                iter <= {ITER_W{1'b0}};
                if (!x_in[IN_W-1]) begin         // right half plane: as is
                    x <= xe;  y <= ye;  angle <= {Z_W{1'b0}};
                end else if (!y_in[IN_W-1]) begin // second quadrant: rotate by -90 deg
                    x <= ye;  y <= -xe; angle <= QUARTER;
                end else begin                    // third quadrant: rotate by +90 deg
                    x <= -ye; y <= xe;  angle <= -QUARTER;
                end
            end
        end else begin
            if (!y[W-1]) begin  // y >= 0: rotate clockwise
                x <= x + y_shift;  y <= y - x_shift;  angle <= angle + step;
            end else begin
                x <= x - y_shift;  y <= y + x_shift;  angle <= angle - step;
            end
            iter <= iter + 1'b1;
            if (iter == LAST) begin
                busy <= 1'b0;
                done <= 1'b1;
            end
        end
    end
endmodule
