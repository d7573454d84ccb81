// 8N1 UART receiver: start bit, 8 data bits LSB first, one stop bit, sampled mid-bit.
//
// CLKS_PER_BIT = clock / baud (>= 4, so the half-bit and full-bit counts are distinct).
// out_valid pulses for one cycle with out_byte when a byte's stop bit reads 1; framing_error
// pulses instead when it reads 0 (the byte is dropped, as a PC UART would, and the receiver
// waits for the line to go idle-high before hunting for the next start bit, so a held-low
// line (break) gives one error, not a stream of zero bytes).
module uart_rx #(
    parameter CLKS_PER_BIT = 868  // 100 MHz / 115200; 109 for 921600 baud
) (
    input  wire       clk,
    input  wire       rst,           // synchronous, active high
    input  wire       rx,            // asynchronous serial line, idle high
    output reg        out_valid,
    output reg  [7:0] out_byte,
    output reg        framing_error
);
    localparam CW = $clog2(CLKS_PER_BIT + 1);
    localparam integer HALF_I = CLKS_PER_BIT / 2 - 1;
    localparam integer FULL_I = CLKS_PER_BIT - 1;
    localparam [CW-1:0] HALF = HALF_I[CW-1:0];  // counter-wide copies: no width mismatch
    localparam [CW-1:0] FULL = FULL_I[CW-1:0];

    localparam [2:0] IDLE = 3'd0, START = 3'd1, DATA = 3'd2, STOP = 3'd3, WAIT_IDLE = 3'd4;

    // Two flops: rx comes from another clock domain (the cable), so the first flop may go
    // metastable; only the second one's output is used. They reset to idle (1) so a reset
    // does not look like a start bit.
    reg rx_meta, rx_s;
    reg [2:0] state;
    reg [CW-1:0] cnt;
    reg [2:0] bit_idx;
    reg [7:0] shift;

    always @(posedge clk) begin
        if (rst) begin
            rx_meta <= 1'b1;
            rx_s <= 1'b1;
            state <= IDLE;
            cnt <= {CW{1'b0}};
            bit_idx <= 3'd0;
            shift <= 8'd0;
            out_valid <= 1'b0;
            out_byte <= 8'd0;
            framing_error <= 1'b0;
        end else begin
            rx_meta <= rx;
            rx_s <= rx_meta;
            out_valid <= 1'b0;
            framing_error <= 1'b0;
            case (state)
                IDLE:
                    if (!rx_s) begin
                        state <= START;
                        cnt <= {CW{1'b0}};
                    end
                START:
                    // Re-check the start bit in its middle: a glitch shorter than half a bit
                    // is ignored instead of producing a byte.
                    if (cnt == HALF) begin
                        cnt <= {CW{1'b0}};
                        bit_idx <= 3'd0;
                        state <= rx_s ? IDLE : DATA;
                    end else
                        cnt <= cnt + 1'b1;
                DATA:
                    // From the middle of the start bit, every full bit period lands mid-bit.
                    if (cnt == FULL) begin
                        cnt <= {CW{1'b0}};
                        shift <= {rx_s, shift[7:1]};  // LSB first
                        bit_idx <= bit_idx + 1'b1;
                        if (bit_idx == 3'd7)
                            state <= STOP;
                    end else
                        cnt <= cnt + 1'b1;
                STOP:
                    if (cnt == FULL) begin
                        cnt <= {CW{1'b0}};
                        if (rx_s) begin
                            out_valid <= 1'b1;
                            out_byte <= shift;
                            state <= IDLE;  // mid stop bit: the line is high, next edge is a start
                        end else begin
                            framing_error <= 1'b1;
                            state <= WAIT_IDLE;
                        end
                    end else
                        cnt <= cnt + 1'b1;
                WAIT_IDLE:
                    if (rx_s)
                        state <= IDLE;
                default:
                    state <= IDLE;
            endcase
        end
    end
endmodule
