// Bias pulse generator: one rectangular bias pulse per accepted trigger, timed to the cycle.
//
// Timing contract (what twin.fpga.FpgaTiming / TwinMicroscope._pulse model):
//   trigger sampled high at clock edge n0 (and accepted)
//   -> bias_on rises and bias_code takes the clamped amplitude at edge n0 + LATENCY
//   -> bias_on falls and bias_code returns to 0 at edge n0 + LATENCY + width,
//   so the bias is applied for exactly `width` clock cycles, LATENCY cycles after the trigger
//   (twin: start = trigger time + FpgaTiming.pulse_latency, width = FpgaTiming.cycles(width)).
//   done is high for the one cycle after the falling edge; a trigger in that cycle is accepted.
//
// Refusals (no pulse is emitted, the bias stays 0, a sticky flag is set until err_clear/rst):
//   - width < MIN_CYCLES or width > MAX_CYCLES -> err_width. Refused rather than raised to the
//     minimum: a silently lengthened pulse would write a larger domain than the host asked for
//     and than the twin predicts; the host's SafetyLimits already refuse such widths, so the
//     flag only fires on a host bug or a corrupted register.
//   - trigger while active (latency or bias phase)  -> err_busy; the running pulse is untouched.
//
// Amplitude and width are latched at the trigger (a register write during a pulse does not
// change it), but the clamp is applied on the output register every cycle from the live clamp
// register, so lowering the clamp takes effect on the next clock even mid-pulse.
`include "pfm_spec.vh"

module pulse_gen #(
    parameter integer WIDTH       = `PFM_DAC_BITS,             // bias DAC code width
    parameter integer CLAMP_BITS  = `PFM_DAC_BITS,             // clamp register width
    parameter integer COUNT_BITS  = 32,                        // width register / counter size
    parameter integer LATENCY     = `PFM_PULSE_LATENCY_CYCLES, // trigger -> bias edge, >= 1
    parameter integer MIN_CYCLES  = `PFM_PULSE_MIN_CYCLES,     // shortest accepted width
    parameter integer MAX_CYCLES  = `PFM_PULSE_MAX_CYCLES      // longest accepted width
) (
    input  wire                         clk,
    input  wire                         rst,        // synchronous, active high
    input  wire                         trigger,    // 1-cycle start request
    input  wire signed [WIDTH-1:0]      amplitude,  // requested bias code
    input  wire        [CLAMP_BITS-1:0] clamp,      // bias clamp register (unsigned |code| limit)
    input  wire        [COUNT_BITS-1:0] width,      // pulse width, clock cycles
    input  wire                         err_clear,  // clears the sticky error flags
    output reg  signed [WIDTH-1:0]      bias_code,  // to the bias DAC: clamped amplitude or 0
    output reg                          bias_on,    // high exactly while the pulse is applied
    output reg                          active,     // a pulse is pending or applied
    output reg                          done,       // 1 cycle after the pulse ends
    output reg                          err_busy,   // sticky: a trigger came while active
    output reg                          err_width   // sticky: a trigger with an illegal width
);
    localparam [1:0] IDLE = 2'd0, WAIT = 2'd1, ON = 2'd2;

    // Compare widths in COUNT_BITS so the limits cannot be truncated silently.
    localparam [COUNT_BITS-1:0] MIN_W = MIN_CYCLES;
    localparam [COUNT_BITS-1:0] MAX_W = MAX_CYCLES;
    localparam [COUNT_BITS-1:0] LAT_M1 = LATENCY - 1;

    reg [1:0]             state;
    reg [COUNT_BITS-1:0]  count;      // cycles left in the current phase, minus one
    reg [COUNT_BITS-1:0]  width_m1;   // latched width - 1
    reg signed [WIDTH-1:0] amp_latched;

    wire signed [WIDTH-1:0] clamped;
    bias_clamp #(.WIDTH(WIDTH), .CLAMP_BITS(CLAMP_BITS)) u_clamp (
        .code_in(amp_latched), .clamp(clamp), .code_out(clamped)
    );

    wire width_ok = (width >= MIN_W) && (width <= MAX_W) && (width != {COUNT_BITS{1'b0}});

    always @(posedge clk) begin
        done <= 1'b0;
        if (rst) begin
            state       <= IDLE;
            count       <= {COUNT_BITS{1'b0}};
            width_m1    <= {COUNT_BITS{1'b0}};
            amp_latched <= {WIDTH{1'b0}};
            bias_code   <= {WIDTH{1'b0}};
            bias_on     <= 1'b0;
            active      <= 1'b0;
            err_busy    <= 1'b0;
            err_width   <= 1'b0;
        end else begin
            if (err_clear) begin
                err_busy  <= 1'b0;
                err_width <= 1'b0;
            end
            case (state)
                IDLE: if (trigger) begin
                    if (width_ok) begin
                        amp_latched <= amplitude;
                        width_m1    <= width - 1'b1;
                        count       <= LAT_M1;
                        state       <= WAIT;
                        active      <= 1'b1;
                    end else begin
                        err_width <= 1'b1;
                    end
                end
                WAIT: begin
                    if (trigger) err_busy <= 1'b1;
                    if (count == {COUNT_BITS{1'b0}}) begin
                        // Edge n0 + LATENCY: the bias edge.
                        bias_code <= clamped;
                        bias_on   <= 1'b1;
                        count     <= width_m1;
                        state     <= ON;
                    end else begin
                        count <= count - 1'b1;
                    end
                end
                ON: begin
                    if (trigger) err_busy <= 1'b1;
                    if (count == {COUNT_BITS{1'b0}}) begin
                        // Edge n0 + LATENCY + width: the falling edge.
                        bias_code <= {WIDTH{1'b0}};
                        bias_on   <= 1'b0;
                        active    <= 1'b0;
                        done      <= 1'b1;
                        state     <= IDLE;
                    end else begin
                        bias_code <= clamped;  // follows a clamp lowered mid-pulse
                        count     <= count - 1'b1;
                    end
                end
                default: begin
                    // Unreachable state: return to a safe idle with the bias off.
                    bias_code <= {WIDTH{1'b0}};
                    bias_on   <= 1'b0;
                    active    <= 1'b0;
                    state     <= IDLE;
                end
            endcase
        end
    end
endmodule
