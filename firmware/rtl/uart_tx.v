// 8N1 UART transmitter with a valid/ready byte input.
//
// A byte is taken when in_valid && in_ready; in_ready is high only while the line is idle, so
// a producer can hold in_valid and stream bytes back to back (one extra idle cycle per byte,
// which just lengthens the stop bit). CLKS_PER_BIT = clock / baud.
module uart_tx #(
    parameter CLKS_PER_BIT = 868
) (
    input  wire       clk,
    input  wire       rst,        // synchronous, active high
    input  wire       in_valid,
    input  wire [7:0] in_byte,
    output wire       in_ready,
    output reg        tx          // serial line, idle high
);
    localparam CW = $clog2(CLKS_PER_BIT + 1);
    localparam integer FULL_I = CLKS_PER_BIT - 1;
    localparam [CW-1:0] FULL = FULL_I[CW-1:0];  // counter-wide copy: no width mismatch

    // The whole character {stop, data, start} sits in one shift register, sent LSB first.
    reg        busy;
    reg [9:0]  shift;
    reg [3:0]  bits_left;
    reg [CW-1:0] cnt;

    assign in_ready = !busy;

    always @(posedge clk) begin
        if (rst) begin
            busy <= 1'b0;
            shift <= 10'h3FF;
            bits_left <= 4'd0;
            cnt <= {CW{1'b0}};
            tx <= 1'b1;
        end else if (!busy) begin
            tx <= 1'b1;
            if (in_valid) begin
                busy <= 1'b1;
                tx <= 1'b0;                      // start bit goes out right away
                shift <= {1'b1, 1'b1, in_byte};  // remaining: data (LSB first), stop, filler
                bits_left <= 4'd9;               // 8 data + stop after the start bit
                cnt <= {CW{1'b0}};
            end
        end else if (cnt == FULL) begin
            cnt <= {CW{1'b0}};
            if (bits_left == 4'd0) begin
                busy <= 1'b0;                    // stop bit has lasted a full bit period
                tx <= 1'b1;
            end else begin
                tx <= shift[0];
                shift <= {1'b1, shift[9:1]};
                bits_left <= bits_left - 1'b1;
            end
        end else
            cnt <= cnt + 1'b1;
    end
endmodule
