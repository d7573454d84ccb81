// Simulation-only top level for firmware/tb/frame_parser_tb.py: not synthesizable.
//
// The clock is generated here (100 MHz) because a clock driven from Python costs a callback per
// edge (TOOLCHAIN.md). The parser's byte input comes either straight from the testbench
// (use_uart = 0) or from the serial path uart_tx -> line -> uart_rx (use_uart = 1). The line is
// tx AND line_ext, so the testbench can also inject raw serial waveforms (e.g. a bad stop bit)
// by pulling line_ext low while tx idles.
module frame_parser_tb_top #(
    parameter MAX_PAYLOAD = 64,
    parameter CLKS_PER_BIT = 4
) (
    output reg                      clk,
    input  wire                     rst,
    input  wire                     use_uart,
    // direct byte input
    input  wire                     in_valid,
    input  wire [7:0]               in_byte,
    // serial path
    input  wire                     tx_valid,
    input  wire [7:0]               tx_byte,
    output wire                     tx_ready,
    input  wire                     line_ext,
    output wire                     line,
    output wire                     rx_valid,
    output wire [7:0]               rx_byte,
    output wire                     rx_framing_error,
    // parser outputs
    output wire                     frame_ok,
    output wire                     frame_bad_crc,
    output wire [15:0]              seq,
    output wire [7:0]               cmd,
    output wire [15:0]              len,
    output wire                     too_long,
    output wire [8*MAX_PAYLOAD-1:0] payload,
    output wire                     in_frame,
    output wire [31:0]              dropped,
    // One signal per monitor to wait on, so a monitor wakes only when there is something to see.
    output wire                     frame_event,
    output wire                     rx_event
);
    initial clk = 1'b0;
    always #5 clk = ~clk;

    assign frame_event = frame_ok | frame_bad_crc;
    assign rx_event = rx_valid | rx_framing_error;

    wire tx_line;
    assign line = tx_line & line_ext;

    uart_tx #(.CLKS_PER_BIT(CLKS_PER_BIT)) u_tx (
        .clk(clk), .rst(rst), .in_valid(tx_valid), .in_byte(tx_byte), .in_ready(tx_ready),
        .tx(tx_line));

    uart_rx #(.CLKS_PER_BIT(CLKS_PER_BIT)) u_rx (
        .clk(clk), .rst(rst), .rx(line), .out_valid(rx_valid), .out_byte(rx_byte),
        .framing_error(rx_framing_error));

    frame_parser #(.MAX_PAYLOAD(MAX_PAYLOAD)) u_parser (
        .clk(clk), .rst(rst),
        .in_valid(use_uart ? rx_valid : in_valid),
        .in_byte(use_uart ? rx_byte : in_byte),
        .frame_ok(frame_ok), .frame_bad_crc(frame_bad_crc), .seq(seq), .cmd(cmd), .len(len),
        .too_long(too_long), .payload(payload), .in_frame(in_frame), .dropped(dropped));
endmodule
