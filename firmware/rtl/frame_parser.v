// Wire-protocol frame parser (docs/protocol.md): bytes in, verdicts out.
//
// Its verdicts equal control.wire.Decoder's on the same bytes (firmware/tb/frame_parser_tb.py
// checks that):
//   * Hunting: every stream position p after the previous frame is tried in order, once its
//     7-byte window [SYNC, LEN lo, LEN hi, SEQ lo, SEQ hi, CMD, HCRC] has arrived; the window is
//     a header when byte p is SYNC and HCRC = CRC-8 of bytes p..p+5. Otherwise byte p is
//     dropped and the window slides by one (the Decoder's "skip that one byte and search
//     again"), so a SYNC inside a rejected window is still tried.
//   * Frame: LEN payload bytes, then the CRC-16/CCITT-FALSE of header+payload, u16 LE.
//     frame_ok or frame_bad_crc pulses one cycle after the last CRC byte is taken.
//   * After any frame, good or bad, hunting restarts with the next byte: a frame whose header
//     checked is consumed whole and never rescanned (a bad CRC says nothing about where the
//     next frame starts, and the Decoder does the same).
//   * A truncated frame simply waits for more bytes, which the next bytes then complete
//     (typically with a bad CRC), as in the Decoder. There is no timeout here.
//
// One byte per cycle at most (in_valid may stay high); the parser never stalls, so there is
// no in_ready. Payloads up to MAX_PAYLOAD bytes are stored; a longer frame is still checked
// and reported with too_long = 1 and no payload (its payload is ignored, not truncated).
//
// Outputs are registered. seq/cmd/len/too_long are valid with the verdict pulses and hold
// until the next verdict. payload[8*i +: 8] is payload byte i (i < len); the buffer is
// rewritten from the next frame's first payload byte on, i.e. it holds for at least the
// next 7 input bytes (the next header) after frame_ok.
`include "pfm_spec.vh"

module frame_parser #(
    parameter MAX_PAYLOAD = 64
) (
    input  wire                     clk,
    input  wire                     rst,          // synchronous, active high
    input  wire                     in_valid,
    input  wire [7:0]               in_byte,

    output reg                      frame_ok,     // pulse: CRC good
    output reg                      frame_bad_crc,// pulse: header good, CRC bad (for NAK BAD_CRC)
    output reg  [15:0]              seq,
    output reg  [7:0]               cmd,
    output reg  [15:0]              len,
    output reg                      too_long,     // len > MAX_PAYLOAD: payload not stored
    output wire [8*MAX_PAYLOAD-1:0] payload,
    output wire                     in_frame,     // a checked header's frame is being received
    output reg  [31:0]              dropped       // bytes skipped while hunting (wraps)
);
    // Buffer address width; at least 1 bit so MAX_PAYLOAD = 1 still elaborates.
    localparam AW = (MAX_PAYLOAD > 1) ? $clog2(MAX_PAYLOAD) : 1;
    localparam [1:0] HUNT = 2'd0, BODY = 2'd1, CRC_LO = 2'd2, CRC_HI = 2'd3;

    reg [1:0]  state;
    // The 6 previous bytes while hunting, oldest in the top byte; with in_byte they make the
    // candidate window. fill counts how many of them belong to the current hunt (after reset
    // or a frame), so no window ever reaches back into a consumed frame.
    reg [47:0] win;
    reg [2:0]  fill;

    reg [15:0] h_len, h_seq;     // header of the frame in progress
    reg [7:0]  h_cmd;
    reg        h_long;
    reg [15:0] count;            // payload bytes taken so far
    reg [15:0] crc;              // running CRC-16 over header + payload taken so far
    reg [7:0]  crc_lo;

    reg [7:0] buffer [0:MAX_PAYLOAD-1];

    genvar g;
    generate
        for (g = 0; g < MAX_PAYLOAD; g = g + 1) begin : flat
            assign payload[8*g +: 8] = buffer[g];
        end
    endgenerate

    assign in_frame = (state != HUNT);

    // ---- header check on the window as it would be with this byte shifted in ----------------
    // Checking the incoming window combinationally lets the byte right after a header be the
    // first payload byte without a stall cycle.
    wire [55:0] window = {win, in_byte};
    wire [7:0]  hcrc_calc;
    wire [15:0] hdr_crc16;   // CRC-16 state after the 7 header bytes
    wire [15:0] byte_crc16;  // CRC-16 state after one more payload byte

    pfm_crc #(.WIDTH(8), .POLY(8'h07), .BYTES(6)) u_hcrc (
        .crc_in(8'h00), .data(window[55:8]), .crc_out(hcrc_calc));
    pfm_crc #(.WIDTH(16), .POLY(16'h1021), .BYTES(7)) u_hcrc16 (
        .crc_in(16'hFFFF), .data(window), .crc_out(hdr_crc16));
    pfm_crc #(.WIDTH(16), .POLY(16'h1021), .BYTES(1)) u_crc16 (
        .crc_in(crc), .data(in_byte), .crc_out(byte_crc16));

    wire        header_ok = (fill == 3'd6) && (window[55:48] == `PFM_SYNC) &&
                            (hcrc_calc == window[7:0]);
    wire [15:0] w_len = {window[39:32], window[47:40]};  // little endian
    wire [15:0] w_seq = {window[23:16], window[31:24]};
    wire [7:0]  w_cmd = window[15:8];

    always @(posedge clk) begin
        if (rst) begin
            state <= HUNT;
            win <= 48'd0;
            fill <= 3'd0;
            h_len <= 16'd0;
            h_seq <= 16'd0;
            h_cmd <= 8'd0;
            h_long <= 1'b0;
            count <= 16'd0;
            crc <= 16'hFFFF;
            crc_lo <= 8'd0;
            frame_ok <= 1'b0;
            frame_bad_crc <= 1'b0;
            seq <= 16'd0;
            cmd <= 8'd0;
            len <= 16'd0;
            too_long <= 1'b0;
            dropped <= 32'd0;
        end else begin
            frame_ok <= 1'b0;
            frame_bad_crc <= 1'b0;
            if (in_valid) begin
                case (state)
                    HUNT:
                        if (header_ok) begin
                            h_len <= w_len;
                            h_seq <= w_seq;
                            h_cmd <= w_cmd;
                            h_long <= ({16'd0, w_len} > MAX_PAYLOAD);  // 32-bit compare with the parameter
                            crc <= hdr_crc16;
                            count <= 16'd0;
                            fill <= 3'd0;
                            state <= (w_len == 16'd0) ? CRC_LO : BODY;
                        end else begin
                            win <= window[47:0];
                            if (fill == 3'd6)
                                dropped <= dropped + 1'b1;  // oldest byte leaves, never a header
                            else
                                fill <= fill + 1'b1;
                        end
                    BODY: begin
                        if (!h_long)
                            buffer[count[AW-1:0]] <= in_byte;  // count < MAX_PAYLOAD here
                        crc <= byte_crc16;
                        count <= count + 1'b1;
                        if (count == h_len - 1'b1)
                            state <= CRC_LO;
                    end
                    CRC_LO: begin
                        crc_lo <= in_byte;
                        state <= CRC_HI;
                    end
                    CRC_HI: begin
                        frame_ok <= (crc == {in_byte, crc_lo});
                        frame_bad_crc <= (crc != {in_byte, crc_lo});
                        seq <= h_seq;
                        cmd <= h_cmd;
                        len <= h_len;
                        too_long <= h_long;
                        state <= HUNT;       // fill is already 0: hunting starts afresh
                    end
                    default:
                        state <= HUNT;
                endcase
            end
        end
    end
endmodule
