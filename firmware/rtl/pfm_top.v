// PFM controller top level: the command UART, the register file, and the pulse, scan and
// lock-in blocks behind it.
//
//   uart_rxd -> uart_rx -> frame_parser -> decode -> register file --> pulse_gen -> bias DAC
//                                            |                    \-> scan_gen  -> X/Y DACs
//   uart_txd <- uart_tx <- responder <-------/                     \-> lockin <- ADC
//                                                                   |      \-> pixel stream
//                                                                   \-> be_engine -> drive DAC
//                                                                          <- ADC (capture)
//
// Commands (docs/protocol.md): READ_REG (0x10) and WRITE_REG (0x11), payload `B address, I
// value` (5 bytes). Every frame with a good header gets exactly one answer with its SEQ:
//   ACK READ_REG: the 4-byte value; ACK WRITE_REG: empty;
//   NAK BAD_CRC (frame CRC failed), UNKNOWN_COMMAND (any other command), MALFORMED (payload not
//   5 bytes), OUT_OF_RANGE (address unknown, read-only for a write, write-only for a read; a
//   value wider than the register; an illegal pulse width or scan setting at the trigger),
//   BUSY (a pulse trigger or scan start while a pulse or scan runs).
//   A refused write changes nothing. The NAK texts come from firmware/spec.py (pfm_spec.vh).
// The host sends one request at a time (control.serial_client does). A request that completes
// while the previous answer is still being sent is not answered and sets STATUS.ANSWER_DROPPED;
// the host's resend after its timeout recovers.
//
// Timing: the decode runs in the cycle in which frame_parser reports the frame (frame_ok), and
// writes, the pulse trigger and the scan start are registered at the next edge, so they act
// `PFM_COMMAND_LATENCY_CYCLES (2) edges after frame_ok rose: a pulse's bias edge comes 2 + 4
// cycles after it (pulse_gen's latency), a scan's pixel 0 is on the DACs 2 edges after it.
//
// Scan and lock-in: a scan start also clears the lock-in (NCO phase 0) and restarts the ADC
// strobe divider, so with PIXEL_CYCLES = LOCKIN_DECIMATION * ADC_DIV each lock-in pixel takes
// exactly the ADC samples of one scan pixel, the last one in the pixel's last cycle. adc_strobe
// is high for one cycle every ADC_DIV cycles while scanning; adc_data is taken in that cycle.
// Lock-in results leave on the pixel stream (pixel_valid with amplitude and phase), as on the
// instrument's DMA FIFO to the host, 75 cycles after their pixel ends; PIXEL_COUNT counts them.
// When a scan ends, X/Y_SETPOINT take its last position, so the tip stays where it is.
//
// Band excitation (be_engine.v): the host writes the drive table word by word (BE_TABLE_ADDR,
// then BE_TABLE_DATA, which advances the address), BE_LENGTH and BE_REPEATS, and writes
// BE_START (NAK BUSY while a pulse, a scan or a play runs; NAK OUT_OF_RANGE with the VALUE text
// for a length of 0 or beyond the table, or 0 repeats). The engine's ADC samples share
// adc_strobe with the scan's (one runs at a time) and it drives drive_dac; the host reads the
// summed capture word by word (BE_CAPTURE_ADDR, then BE_CAPTURE_DATA, which advances it).
`include "pfm_spec.vh"

module pfm_top #(
    parameter integer CLKS_PER_BIT = `PFM_UART_CLKS_PER_BIT,  // clock / baud of the UART
    parameter integer ADC_DIV      = `PFM_ADC_DIV              // clock cycles per ADC sample
) (
    input  wire                              clk,
    input  wire                              rst,          // synchronous, active high
    input  wire                              uart_rxd,     // command UART from the host
    output wire                              uart_txd,     // answers to the host
    input  wire signed [`PFM_ADC_BITS-1:0]   adc_data,     // deflection ADC code
    output wire                              adc_strobe,   // adc_data is taken in this cycle
    output wire        [`PFM_DAC_BITS-1:0]   x_dac,        // scanner DAC codes (unsigned)
    output wire        [`PFM_DAC_BITS-1:0]   y_dac,
    output wire signed [`PFM_DAC_BITS-1:0]   bias_dac,     // tip bias DAC code
    output wire signed [`PFM_DAC_BITS-1:0]   drive_dac,    // AC drive DAC code (band excitation)
    output wire                              bias_on,      // high exactly while a pulse is applied
    output wire                              pixel_valid,  // pixel stream: one cycle per pixel
    output wire        [23:0]                pixel_amplitude,  // UQ16.8 ADC LSB (lockin.v)
    output wire signed [15:0]                pixel_phase,      // 2^-16 turn
    output reg         [31:0]                pixel_count,  // pixels delivered since scan start
    output wire                              command       // a frame verdict (good or bad CRC)
);
    localparam [15:0] FULL_SCALE = `PFM_DAC_FULL_SCALE;
    localparam [31:0] MIN_W = `PFM_PULSE_MIN_CYCLES;
    localparam [31:0] MAX_W = `PFM_PULSE_MAX_CYCLES;
    localparam [63:0] READABLE = `PFM_REG_READABLE;
    localparam [63:0] WRITABLE = `PFM_REG_WRITABLE;
    localparam integer DIV_W = $clog2(ADC_DIV + 1);
    localparam [DIV_W-1:0] DIV_LAST = ADC_DIV - 1;
    localparam integer BE_DEPTH = `PFM_BE_TABLE_DEPTH;
    localparam integer BE_AW = $clog2(BE_DEPTH);

    // ---- command UART and frame parser ---------------------------------------------------
    wire       rx_valid, rx_ferr;
    wire [7:0] rx_byte;
    uart_rx #(.CLKS_PER_BIT(CLKS_PER_BIT)) u_rx (
        .clk(clk), .rst(rst), .rx(uart_rxd),
        .out_valid(rx_valid), .out_byte(rx_byte), .framing_error(rx_ferr));

    wire        p_ok, p_bad, p_long;
    wire [15:0] p_seq, p_len;
    wire [7:0]  p_cmd;
    wire [63:0] p_payload;
    /* verilator lint_off PINCONNECTEMPTY */
    frame_parser #(.MAX_PAYLOAD(8)) u_parser (
        .clk(clk), .rst(rst), .in_valid(rx_valid), .in_byte(rx_byte),
        .frame_ok(p_ok), .frame_bad_crc(p_bad), .seq(p_seq), .cmd(p_cmd), .len(p_len),
        .too_long(p_long), .payload(p_payload), .in_frame(), .dropped());
    /* verilator lint_on PINCONNECTEMPTY */
    assign command = p_ok | p_bad;

    // ---- registers ---------------------------------------------------------------------------
    reg  [15:0]        x_set, y_set, points, lines, x_step, y_step, clamp_reg, decimation;
    reg  [31:0]        pixel_cycles, width_reg, phase_inc, cycle_count, last_cycles;
    reg  signed [15:0] bias_reg, last_code;
    reg                retrace, pulse_trigger, scan_start, err_clear, uart_ferr, answer_dropped;
    reg                bias_on_d;
    reg  [BE_AW-1:0]   be_table_addr, be_capture_addr;
    reg  [BE_AW:0]     be_length;
    reg  [15:0]        be_repeats;
    reg                be_table_we, be_start, be_capture_next;
    reg  signed [15:0] be_table_data;

    // ---- blocks ------------------------------------------------------------------------------
    wire pg_active, pg_err_busy, pg_err_width;
    /* verilator lint_off PINCONNECTEMPTY */
    pulse_gen #(.WIDTH(16), .CLAMP_BITS(16), .COUNT_BITS(32)) u_pulse (
        .clk(clk), .rst(rst), .trigger(pulse_trigger), .amplitude(bias_reg), .clamp(clamp_reg),
        .width(width_reg), .err_clear(err_clear), .bias_code(bias_dac), .bias_on(bias_on),
        .active(pg_active), .done(), .err_busy(pg_err_busy), .err_width(pg_err_width));

    wire [15:0] scan_x, scan_y;
    wire        scan_busy, scan_done, sg_err_busy, sg_err_config;
    scan_gen #(.DAC_BITS(16), .INDEX_BITS(16), .COUNT_BITS(32)) u_scan (
        .clk(clk), .rst(rst), .start(scan_start), .points(points), .lines(lines),
        .pixel_cycles(pixel_cycles), .retrace(retrace), .x_origin(x_set), .x_step(x_step),
        .y_origin(y_set), .y_step(y_step), .x_code(scan_x), .y_code(scan_y), .ix(), .iy(),
        .reverse(), .pixel(), .line_start(), .busy(scan_busy), .done(scan_done),
        .err_busy(sg_err_busy), .err_config(sg_err_config));

    reg [DIV_W-1:0] adc_div;
    wire scan_strobe = scan_busy && (adc_div == DIV_LAST);
    wire be_strobe, be_busy;
    wire signed [31:0] be_capture;
    assign adc_strobe = scan_strobe || be_strobe;
    /* verilator lint_off PINCONNECTEMPTY */
    be_engine #(.DEPTH(BE_DEPTH), .ADC_DIV(ADC_DIV)) u_be (
        .clk(clk), .rst(rst), .table_we(be_table_we), .table_addr(be_table_addr), .table_data(be_table_data),
        .length(be_length), .repeats(be_repeats), .start(be_start), .drive(drive_dac), .adc_strobe(be_strobe),
        .adc_data(adc_data), .capture_addr(be_capture_addr), .capture_data(be_capture), .busy(be_busy), .done());
    /* verilator lint_on PINCONNECTEMPTY */
    wire overrun;
    lockin #(.DEC_W(16), .AMP_W(24)) u_lockin (
        .clk(clk), .rst(rst), .clear(scan_start), .phase_inc(phase_inc),
        .samples_per_pixel(decimation), .sample(adc_data), .sample_valid(scan_strobe),
        .amplitude(pixel_amplitude), .phase(pixel_phase), .out_valid(pixel_valid), .ref_cos(),
        .overrun(overrun));
    /* verilator lint_on PINCONNECTEMPTY */

    assign x_dac = scan_busy ? scan_x : x_set;
    assign y_dac = scan_busy ? scan_y : y_set;

    wire pulse_busy = pg_active || pulse_trigger;
    wire be_playing = be_busy || be_start;
    wire busy = pulse_busy || scan_busy || scan_start || be_playing;

    wire [31:0] status;
    assign status = {22'd0, be_playing, answer_dropped, uart_ferr, overrun, sg_err_busy, sg_err_config,
                     pg_err_busy, pg_err_width, scan_busy || scan_start, pulse_busy};

    // ---- decode ------------------------------------------------------------------------------
    wire [7:0]  r_addr  = p_payload[7:0];
    wire [31:0] r_value = p_payload[39:8];  // payload bytes 1..4, little endian
    wire        readable = (r_addr < 8'd64) && READABLE[r_addr[5:0]];
    wire        writable = (r_addr < 8'd64) && WRITABLE[r_addr[5:0]];

    // Does r_value fit the addressed register? 16-bit registers take 0..65535, BIAS_CODE a
    // sign-extended 16-bit code, CONTROL its three bits; the rest are 32 bits wide.
    reg fits;
    always @* begin
        case (r_addr)
            `PFM_REG_X_SETPOINT, `PFM_REG_Y_SETPOINT, `PFM_REG_PIXELS_PER_LINE, `PFM_REG_LINES,
            `PFM_REG_X_STEP, `PFM_REG_Y_STEP, `PFM_REG_BIAS_CLAMP_CODE, `PFM_REG_LOCKIN_DECIMATION,
            `PFM_REG_BE_REPEATS:
                fits = (r_value[31:16] == 16'd0);
            `PFM_REG_BE_TABLE_ADDR, `PFM_REG_BE_CAPTURE_ADDR:
                fits = (r_value[31:BE_AW] == {(32 - BE_AW){1'b0}});
            `PFM_REG_BE_LENGTH:
                fits = (r_value != 32'd0) && (r_value <= BE_DEPTH);
            `PFM_REG_BE_TABLE_DATA:
                fits = (r_value[31:15] == 17'd0) || (r_value[31:15] == {17{1'b1}});
            `PFM_REG_BIAS_CODE:
                fits = (r_value[31:15] == 17'd0) || (r_value[31:15] == {17{1'b1}});
            `PFM_REG_CONTROL:
                fits = (r_value[31:3] == 29'd0);
            default:
                fits = 1'b1;
        endcase
    end

    reg       d_nak, d_write;
    reg [2:0] d_msg;
    always @* begin
        d_nak = 1'b0;
        d_write = 1'b0;
        d_msg = `PFM_MSG_BAD_CRC_ID;
        if (p_bad) begin
            d_nak = 1'b1;
        end else if (p_cmd != `PFM_CMD_READ_REG && p_cmd != `PFM_CMD_WRITE_REG) begin
            d_nak = 1'b1;
            d_msg = `PFM_MSG_UNKNOWN_ID;
        end else if (p_long || p_len != 16'd5) begin
            d_nak = 1'b1;
            d_msg = `PFM_MSG_LENGTH_ID;
        end else if (p_cmd == `PFM_CMD_READ_REG) begin
            if (!readable) begin
                d_nak = 1'b1;
                d_msg = `PFM_MSG_ADDRESS_ID;
            end
        end else if (!writable) begin
            d_nak = 1'b1;
            d_msg = `PFM_MSG_ADDRESS_ID;
        end else if (!fits) begin
            d_nak = 1'b1;
            d_msg = `PFM_MSG_VALUE_ID;
        end else if (r_addr == `PFM_REG_PULSE_TRIGGER) begin
            if (busy) begin
                d_nak = 1'b1;
                d_msg = `PFM_MSG_BUSY_ID;
            end else if (width_reg < MIN_W || width_reg > MAX_W) begin
                d_nak = 1'b1;
                d_msg = `PFM_MSG_WIDTH_ID;
            end else begin
                d_write = 1'b1;
            end
        end else if (r_addr == `PFM_REG_BE_START) begin
            if (busy) begin
                d_nak = 1'b1;
                d_msg = `PFM_MSG_BUSY_ID;
            end else if (be_repeats == 16'd0) begin
                d_nak = 1'b1;
                d_msg = `PFM_MSG_VALUE_ID;
            end else begin
                d_write = 1'b1;
            end
        end else if (r_addr == `PFM_REG_BE_TABLE_DATA && be_playing) begin
            d_nak = 1'b1;  // the table is being played
            d_msg = `PFM_MSG_BUSY_ID;
        end else if (r_addr == `PFM_REG_CONTROL && r_value[`PFM_CONTROL_SCAN_START]) begin
            if (busy) begin
                d_nak = 1'b1;
                d_msg = `PFM_MSG_BUSY_ID;
            end else if (points == 16'd0 || lines == 16'd0 || pixel_cycles == 32'd0) begin
                d_nak = 1'b1;
                d_msg = `PFM_MSG_SCAN_CONFIG_ID;
            end else begin
                d_write = 1'b1;
            end
        end else begin
            d_write = 1'b1;
        end
    end

    reg [31:0] read_value;
    always @* begin
        case (r_addr)
            `PFM_REG_ID:                 read_value = `PFM_REG_ID_VALUE;
            `PFM_REG_VERSION:            read_value = `PFM_REG_VERSION_VALUE;
            `PFM_REG_STATUS:             read_value = status;
            `PFM_REG_CONTROL:            read_value = {29'd0, retrace, 2'b00};
            `PFM_REG_CYCLE_COUNT:        read_value = cycle_count;
            `PFM_REG_X_SETPOINT:         read_value = {16'd0, x_set};
            `PFM_REG_Y_SETPOINT:         read_value = {16'd0, y_set};
            `PFM_REG_PIXELS_PER_LINE:    read_value = {16'd0, points};
            `PFM_REG_PIXEL_CYCLES:       read_value = pixel_cycles;
            `PFM_REG_LINES:              read_value = {16'd0, lines};
            `PFM_REG_X_STEP:             read_value = {16'd0, x_step};
            `PFM_REG_Y_STEP:             read_value = {16'd0, y_step};
            `PFM_REG_BIAS_CODE:          read_value = {{16{bias_reg[15]}}, bias_reg};
            `PFM_REG_PULSE_WIDTH_CYCLES: read_value = width_reg;
            `PFM_REG_BIAS_CLAMP_CODE:    read_value = {16'd0, clamp_reg};
            `PFM_REG_LAST_PULSE_CODE:    read_value = {{16{last_code[15]}}, last_code};
            `PFM_REG_LAST_PULSE_CYCLES:  read_value = last_cycles;
            `PFM_REG_LOCKIN_PHASE_INC:   read_value = phase_inc;
            `PFM_REG_LOCKIN_DECIMATION:  read_value = {16'd0, decimation};
            `PFM_REG_PIXEL_COUNT:        read_value = pixel_count;
            `PFM_REG_BE_TABLE_ADDR:      read_value = {{(32 - BE_AW){1'b0}}, be_table_addr};
            `PFM_REG_BE_LENGTH:          read_value = {{(31 - BE_AW){1'b0}}, be_length};
            `PFM_REG_BE_REPEATS:         read_value = {16'd0, be_repeats};
            `PFM_REG_BE_CAPTURE_ADDR:    read_value = {{(32 - BE_AW){1'b0}}, be_capture_addr};
            `PFM_REG_BE_CAPTURE_DATA:    read_value = be_capture;
            default:                     read_value = 32'd0;
        endcase
    end

    // ---- responder ---------------------------------------------------------------------------
    reg        tx_busy;
    reg [7:0]  t_idx, a_cmd, a_len, a_refused;
    reg [15:0] a_seq;
    reg [31:0] a_value;
    reg        a_nak;
    reg [2:0]  a_msg;
    reg [7:0]  crc8;
    reg [15:0] crc16;

    function [7:0] msg_len;
        input [2:0] id;
        case (id)
            `PFM_MSG_BAD_CRC_ID:     msg_len = `PFM_MSG_BAD_CRC_LEN;
            `PFM_MSG_UNKNOWN_ID:     msg_len = `PFM_MSG_UNKNOWN_LEN;
            `PFM_MSG_ADDRESS_ID:     msg_len = `PFM_MSG_ADDRESS_LEN;
            `PFM_MSG_LENGTH_ID:      msg_len = `PFM_MSG_LENGTH_LEN;
            `PFM_MSG_WIDTH_ID:       msg_len = `PFM_MSG_WIDTH_LEN;
            `PFM_MSG_SCAN_CONFIG_ID: msg_len = `PFM_MSG_SCAN_CONFIG_LEN;
            `PFM_MSG_BUSY_ID:        msg_len = `PFM_MSG_BUSY_LEN;
            default:                 msg_len = `PFM_MSG_VALUE_LEN;
        endcase
    endfunction

    function [7:0] msg_code;
        input [2:0] id;
        case (id)
            `PFM_MSG_BAD_CRC_ID:     msg_code = `PFM_MSG_BAD_CRC_CODE;
            `PFM_MSG_UNKNOWN_ID:     msg_code = `PFM_MSG_UNKNOWN_CODE;
            `PFM_MSG_ADDRESS_ID:     msg_code = `PFM_MSG_ADDRESS_CODE;
            `PFM_MSG_LENGTH_ID:      msg_code = `PFM_MSG_LENGTH_CODE;
            `PFM_MSG_WIDTH_ID:       msg_code = `PFM_MSG_WIDTH_CODE;
            `PFM_MSG_SCAN_CONFIG_ID: msg_code = `PFM_MSG_SCAN_CONFIG_CODE;
            `PFM_MSG_BUSY_ID:        msg_code = `PFM_MSG_BUSY_CODE;
            default:                 msg_code = `PFM_MSG_VALUE_CODE;
        endcase
    endfunction

    // Byte i of message id: the string sits right-aligned in `text`, first character highest.
    function [7:0] msg_byte;
        input [2:0] id;
        input [7:0] i;
        reg [8*64-1:0] text;
        reg [7:0] len;
        begin
            len = msg_len(id);
            case (id)
                `PFM_MSG_BAD_CRC_ID:     text = `PFM_MSG_BAD_CRC;
                `PFM_MSG_UNKNOWN_ID:     text = `PFM_MSG_UNKNOWN;
                `PFM_MSG_ADDRESS_ID:     text = `PFM_MSG_ADDRESS;
                `PFM_MSG_LENGTH_ID:      text = `PFM_MSG_LENGTH;
                `PFM_MSG_WIDTH_ID:       text = `PFM_MSG_WIDTH;
                `PFM_MSG_SCAN_CONFIG_ID: text = `PFM_MSG_SCAN_CONFIG;
                `PFM_MSG_BUSY_ID:        text = `PFM_MSG_BUSY;
                default:                 text = `PFM_MSG_VALUE;
            endcase
            msg_byte = (i < len) ? text[8*(len - 1 - i) +: 8] : 8'h00;
        end
    endfunction

    // The byte at index t_idx of the answer frame.
    wire [7:0] pay_idx = t_idx - 8'd7;
    reg  [7:0] tx_byte;
    always @* begin
        case (t_idx)
            8'd0: tx_byte = `PFM_SYNC;
            8'd1: tx_byte = a_len;
            8'd2: tx_byte = 8'd0;       // LEN high byte: answers are shorter than 256 bytes
            8'd3: tx_byte = a_seq[7:0];
            8'd4: tx_byte = a_seq[15:8];
            8'd5: tx_byte = a_cmd;
            8'd6: tx_byte = crc8;
            default:
                if (t_idx == 8'd7 + a_len)
                    tx_byte = crc16[7:0];
                else if (t_idx == 8'd8 + a_len)
                    tx_byte = crc16[15:8];
                else if (!a_nak)
                    tx_byte = a_value[8*pay_idx[1:0] +: 8];
                else if (pay_idx == 8'd0)
                    tx_byte = msg_code(a_msg);
                else if (pay_idx == 8'd1)
                    tx_byte = a_refused;
                else
                    tx_byte = msg_byte(a_msg, pay_idx - 8'd2);
        endcase
    end

    wire [7:0]  crc8_next;
    wire [15:0] crc16_next;
    pfm_crc #(.WIDTH(8), .POLY(8'h07), .BYTES(1)) u_crc8 (
        .crc_in(crc8), .data(tx_byte), .crc_out(crc8_next));
    pfm_crc #(.WIDTH(16), .POLY(16'h1021), .BYTES(1)) u_crc16 (
        .crc_in(crc16), .data(tx_byte), .crc_out(crc16_next));

    wire tx_ready;
    wire tx_take = tx_busy && tx_ready;
    uart_tx #(.CLKS_PER_BIT(CLKS_PER_BIT)) u_tx (
        .clk(clk), .rst(rst), .in_valid(tx_busy), .in_byte(tx_byte), .in_ready(tx_ready),
        .tx(uart_txd));

    // ---- sequential --------------------------------------------------------------------------
    always @(posedge clk) begin
        pulse_trigger <= 1'b0;
        scan_start    <= 1'b0;
        err_clear     <= 1'b0;
        be_start      <= 1'b0;
        be_table_we   <= 1'b0;
        if (rst) begin
            x_set <= 16'd0;  y_set <= 16'd0;  points <= 16'd0;  lines <= 16'd0;
            x_step <= 16'd0; y_step <= 16'd0; decimation <= 16'd1;
            clamp_reg <= FULL_SCALE;
            pixel_cycles <= 32'd0;  width_reg <= 32'd0;  phase_inc <= 32'd0;
            bias_reg <= 16'sd0;  retrace <= 1'b0;
            be_table_addr <= {BE_AW{1'b0}};  be_capture_addr <= {BE_AW{1'b0}};
            be_length <= {{BE_AW{1'b0}}, 1'b1};  be_repeats <= 16'd1;  be_table_data <= 16'sd0;
            uart_ferr <= 1'b0;  answer_dropped <= 1'b0;
            tx_busy <= 1'b0;  t_idx <= 8'd0;
            a_cmd <= 8'd0;  a_len <= 8'd0;  a_refused <= 8'd0;  a_seq <= 16'd0;
            a_value <= 32'd0;  a_nak <= 1'b0;  a_msg <= 3'd0;
            crc8 <= 8'h00;  crc16 <= 16'hFFFF;
        end else begin
            if (rx_ferr) uart_ferr <= 1'b1;

            // A frame verdict: execute and load the answer (or drop it while one is being sent).
            if (command) begin
                if (tx_busy) begin
                    answer_dropped <= 1'b1;
                end else begin
                    if (d_write) begin
                        case (r_addr)
                            `PFM_REG_CONTROL: begin
                                retrace    <= r_value[`PFM_CONTROL_RETRACE];
                                scan_start <= r_value[`PFM_CONTROL_SCAN_START];
                                if (r_value[`PFM_CONTROL_CLEAR_ERRORS]) begin
                                    err_clear      <= 1'b1;
                                    uart_ferr      <= 1'b0;
                                    answer_dropped <= 1'b0;
                                end
                            end
                            `PFM_REG_X_SETPOINT:         x_set        <= r_value[15:0];
                            `PFM_REG_Y_SETPOINT:         y_set        <= r_value[15:0];
                            `PFM_REG_PIXELS_PER_LINE:    points       <= r_value[15:0];
                            `PFM_REG_PIXEL_CYCLES:       pixel_cycles <= r_value;
                            `PFM_REG_LINES:              lines        <= r_value[15:0];
                            `PFM_REG_X_STEP:             x_step       <= r_value[15:0];
                            `PFM_REG_Y_STEP:             y_step       <= r_value[15:0];
                            `PFM_REG_BIAS_CODE:          bias_reg     <= r_value[15:0];
                            `PFM_REG_PULSE_WIDTH_CYCLES: width_reg    <= r_value;
                            `PFM_REG_PULSE_TRIGGER:      pulse_trigger <= 1'b1;
                            `PFM_REG_BIAS_CLAMP_CODE:    clamp_reg    <= r_value[15:0];
                            `PFM_REG_LOCKIN_PHASE_INC:   phase_inc    <= r_value;
                            `PFM_REG_LOCKIN_DECIMATION:  decimation   <= r_value[15:0];
                            `PFM_REG_BE_TABLE_ADDR:      be_table_addr <= r_value[BE_AW-1:0];
                            `PFM_REG_BE_TABLE_DATA: begin  // written at the next edge, then the address advances
                                be_table_we   <= 1'b1;
                                be_table_data <= r_value[15:0];
                            end
                            `PFM_REG_BE_LENGTH:          be_length    <= r_value[BE_AW:0];
                            `PFM_REG_BE_REPEATS:         be_repeats   <= r_value[15:0];
                            `PFM_REG_BE_START:           be_start     <= 1'b1;
                            `PFM_REG_BE_CAPTURE_ADDR:    be_capture_addr <= r_value[BE_AW-1:0];
                            default: ;
                        endcase
                    end
                    // A read of BE_CAPTURE_DATA took the word (a_value below): advance to the next.
                    if (!d_nak && p_cmd == `PFM_CMD_READ_REG && r_addr == `PFM_REG_BE_CAPTURE_DATA)
                        be_capture_addr <= be_capture_addr + 1'b1;
                    tx_busy   <= 1'b1;
                    t_idx     <= 8'd0;
                    crc8      <= 8'h00;
                    crc16     <= 16'hFFFF;
                    a_seq     <= p_seq;
                    a_refused <= p_cmd;
                    a_nak     <= d_nak;
                    a_msg     <= d_msg;
                    a_value   <= read_value;
                    a_cmd     <= d_nak ? `PFM_CMD_NAK : `PFM_CMD_ACK;
                    a_len     <= d_nak ? 8'd2 + msg_len(d_msg)
                               : (p_cmd == `PFM_CMD_READ_REG) ? 8'd4 : 8'd0;
                end
            end

            if (be_table_we) be_table_addr <= be_table_addr + 1'b1;

            if (tx_take) begin
                if (t_idx < 8'd6) crc8 <= crc8_next;
                if (t_idx < 8'd7 + a_len) crc16 <= crc16_next;
                if (t_idx == 8'd8 + a_len) tx_busy <= 1'b0;
                t_idx <= t_idx + 8'd1;
            end

            // The tip stays where the scan ended.
            if (scan_done) begin
                x_set <= scan_x;
                y_set <= scan_y;
            end
        end
    end

    // Free-running counters and the record of the last pulse as the bias DAC saw it.
    always @(posedge clk) begin
        if (rst) begin
            cycle_count <= 32'd0;
            adc_div     <= {DIV_W{1'b0}};
            pixel_count <= 32'd0;
            bias_on_d   <= 1'b0;
            last_code   <= 16'sd0;
            last_cycles <= 32'd0;
        end else begin
            cycle_count <= cycle_count + 32'd1;
            adc_div <= (scan_start || adc_div == DIV_LAST) ? {DIV_W{1'b0}} : adc_div + 1'b1;
            if (scan_start)
                pixel_count <= 32'd0;
            else if (pixel_valid)
                pixel_count <= pixel_count + 32'd1;
            bias_on_d <= bias_on;
            if (bias_on) begin
                if (!bias_on_d) begin
                    last_code   <= bias_dac;
                    last_cycles <= 32'd1;
                end else begin
                    last_cycles <= last_cycles + 32'd1;
                end
            end
        end
    end
endmodule
