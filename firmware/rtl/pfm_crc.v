// Combinational CRC update over BYTES whole bytes, MSB first, no reflection, no final xor.
//
// One parameterized module serves both checks of the wire protocol (docs/protocol.md), so the
// definition lives in one place and matches control.wire.crc8 / crc16:
//   CRC-8  header check: WIDTH=8,  POLY=8'h07,    crc_in=8'h00
//   CRC-16 frame check:  WIDTH=16, POLY=16'h1021, crc_in=16'hFFFF (CCITT-FALSE)
// data holds the bytes in wire order with the FIRST byte in the most significant position, so a
// header window shifted in byte by byte can be fed straight in.
//
// A CRC update is linear over GF(2): each output bit is the XOR of a fixed subset of the
// {crc_in, data} bits. That subset (a mask) is worked out at elaboration by running the
// bit-serial definition on one-hot inputs (a constant function), and at run time each output
// bit is one reduction XOR. This is the XOR tree synthesis would build from a bit loop anyway,
// but simulators evaluate it far faster than a loop in an always block (Icarus: ~30x per byte).
module pfm_crc #(
    parameter WIDTH = 8,
    parameter [WIDTH-1:0] POLY = 8'h07,
    parameter BYTES = 1
) (
    input  wire [WIDTH-1:0]   crc_in,
    input  wire [8*BYTES-1:0] data,
    output wire [WIDTH-1:0]   crc_out
);
    localparam DBITS = 8 * BYTES;
    localparam N = WIDTH + DBITS;  // inputs: {crc_in, data}

    // Bit-serial reference definition: MSB of data first.
    function [WIDTH-1:0] serial_crc;
        input [WIDTH-1:0] c_in;
        input [DBITS-1:0] d;
        integer i;
        reg [WIDTH-1:0] c;
        begin
            c = c_in;
            for (i = DBITS - 1; i >= 0; i = i - 1)
                c = (c[WIDTH-1] ^ d[i]) ? ((c << 1) ^ POLY) : (c << 1);
            serial_crc = c;
        end
    endfunction

    // Which of the N inputs output bit j depends on.
    function [N-1:0] input_mask;
        input integer j;
        integer k;
        reg [N-1:0] one_hot;
        reg [WIDTH-1:0] select;
        begin
            for (k = 0; k < N; k = k + 1) begin
                one_hot = {N{1'b0}};
                one_hot[k] = 1'b1;
                select = {{(WIDTH-1){1'b0}}, 1'b1} << j;
                input_mask[k] = |(serial_crc(one_hot[N-1:DBITS], one_hot[DBITS-1:0]) & select);
            end
        end
    endfunction

    wire [N-1:0] in_bits = {crc_in, data};

    genvar j;
    generate
        for (j = 0; j < WIDTH; j = j + 1) begin : bit_out
            localparam [N-1:0] MASK = input_mask(j);
            assign crc_out[j] = ^(in_bits & MASK);
        end
    endgenerate
endmodule
