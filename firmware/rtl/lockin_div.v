// Sequential restoring divider (unsigned), one quotient bit per clock: the lock-in divides the
// CORDIC magnitude by the number of samples in the pixel once per pixel, so N_W cycles are cheap
// next to a pixel (tens of samples, 25 clocks each) and avoid a wide combinational divider.
//
// start (while idle) loads the operands; done pulses N_W cycles later with
// quotient = floor(dividend / divisor), remainder = dividend mod divisor (divisor must be > 0;
// 0 gives an all-ones quotient). Both hold until the next start.
module lockin_div #(
    parameter integer N_W = 50,  // dividend and quotient width
    parameter integer D_W = 16   // divisor width
) (
    input  wire           clk,
    input  wire           rst,      // synchronous, active high
    input  wire           start,
    input  wire [N_W-1:0] dividend,
    input  wire [D_W-1:0] divisor,
    output reg            busy,
    output reg            done,
    output reg  [N_W-1:0] quotient,  // shifts the dividend out and the quotient in
    output reg  [D_W-1:0] remainder
);
    localparam integer C_W = $clog2(N_W + 1);
    localparam [C_W-1:0] STEPS = N_W[C_W-1:0];

    reg [D_W-1:0] den;
    reg [C_W-1:0] count;

    // Partial remainder < divisor, so it fits D_W bits; one more bit holds the shifted trial.
    wire [D_W:0] trial = {remainder, quotient[N_W-1]};
    wire         fits  = trial >= {1'b0, den};

    always @(posedge clk) begin
        done <= 1'b0;
        if (rst) begin
            busy      <= 1'b0;
            count     <= {C_W{1'b0}};
            den       <= {D_W{1'b0}};
            quotient  <= {N_W{1'b0}};
            remainder <= {D_W{1'b0}};
        end else if (!busy) begin
            if (start) begin
                busy      <= 1'b1;
                count     <= STEPS;
                den       <= divisor;
                quotient  <= dividend;
                remainder <= {D_W{1'b0}};
            end
        end else begin
            remainder <= fits ? trial[D_W-1:0] - den : trial[D_W-1:0];
            quotient  <= {quotient[N_W-2:0], fits};
            count     <= count - 1'b1;
            if (count == 1) begin
                busy <= 1'b0;
                done <= 1'b1;
            end
        end
    end
endmodule
