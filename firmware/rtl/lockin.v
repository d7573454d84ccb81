// Lock-in demodulator: amplitude and phase of the ADC signal at the NCO frequency, per pixel.
//
//   sample --x--> I = sum x cos ---\
//          \--x--> Q = -sum x sin --+-- CORDIC --> angle ------------------------> phase
//      nco cos/sin                   \          \-> G|I+jQ| --/N--> x scale ------> amplitude
//
// Each sample_valid takes one signed ADC sample and mixes it with the reference of the NCO's
// current phase (the NCO then steps by phase_inc, so the reference frequency is
// phase_inc / 2^32 * adc_rate). The products are summed over samples_per_pixel samples
// (integrate and dump: a boxcar whose nulls sit on the 2f image when the pixel spans a whole
// number of reference half periods; 0 acts as 1), then the pixel's (I, Q) goes to an
// iterative CORDIC and divider while the next pixel accumulates.
//
// Outputs, registered, with a one-cycle out_valid (scaling: firmware/lockin_model.py):
//   amplitude  unsigned UQ16.8 ADC LSB: an input A cos(ref + phi) reads round(256 A),
//              saturating at 2^AMP_W - 1;
//   phase      signed, 2^-16 turn = 360/65536 deg per LSB, [-180, 180) deg: the phase phi of
//              the input relative to the NCO cosine (ref_cos, the drive reference).
// Accuracy against an ideal float64 lock-in of the same samples (lockin_model.error_bound):
// the 2^14-point table deviates from exp(-j theta) by at most pi/2^14 + 2^-15.5, so amplitude is
// within 2 mean|x| (pi/2^14 + 2^-15.5) + 0.01 LSB (<= 8.9 LSB, 0.027 % FS, for a full-scale
// sinusoid) and phase within 0.02 deg for amplitudes >= 10 % FS.
// Latency: out_valid is high at the clock edge 75 cycles (ITER + divider steps + 7 = 18 + 50 + 7)
// after the edge that takes the pixel's last sample; the conversion is busy for 72 of them. A
// pixel must last at least 72 clock cycles (3 samples at the 4 MHz ADC's 25 clocks); a pixel
// ending while the previous one is still being converted is dropped and sets the sticky
// overrun flag.
//
// clear (e.g. at the start of a scan line) resets the NCO phase to 0, discards the partial pixel
// and the samples in the mixer pipeline, and clears overrun; a pixel already in the CORDIC or
// divider is still reported. samples_per_pixel and phase_inc are read live: change them
// together with a clear.
`include "pfm_spec.vh"
`include "lockin_consts.vh"

module lockin #(
    parameter integer ADC_W   = `PFM_ADC_BITS,  // signed ADC sample width
    parameter integer PHASE_W = 32,             // NCO accumulator / phase_inc width
    parameter integer DEC_W   = 16,             // samples_per_pixel width
    parameter integer AMP_W   = 24              // amplitude width (AMP_FRAC of them fraction)
) (
    input  wire                           clk,
    input  wire                           rst,                // synchronous, active high
    input  wire                           clear,              // restart NCO and pixel
    input  wire        [PHASE_W-1:0]      phase_inc,          // LOCKIN_PHASE_INC register
    input  wire        [DEC_W-1:0]        samples_per_pixel,  // LOCKIN_DECIMATION register
    input  wire signed [ADC_W-1:0]        sample,             // ADC code
    input  wire                           sample_valid,       // one cycle per ADC sample
    output reg         [AMP_W-1:0]        amplitude,          // UQ(AMP_W-8).8, ADC LSB
    output reg  signed [`LOCKIN_ANGLE_BITS-1:0] phase,        // 2^-16 turn
    output reg                            out_valid,          // one cycle per pixel
    output wire signed [`LOCKIN_REF_BITS-1:0]   ref_cos,      // reference of the last sample
    output reg                            overrun             // sticky: a pixel was dropped
);
    localparam integer REF_W  = `LOCKIN_REF_BITS;
    localparam integer PROD_W = ADC_W + REF_W;
    // |sum| <= (2^DEC_W - 1) * 2^(ADC_W-1) * (2^(REF_W-1) - 1) < 2^(ACC_W-1): never overflows.
    localparam integer ACC_W  = ADC_W + REF_W + DEC_W;
    localparam integer MAG_W  = ACC_W + 2;          // CORDIC magnitude width
    // mag / N <= G * 2^(ADC_W-1) * 2^(REF_W-1) < 2^PROD_W, so PROD_W quotient bits suffice;
    // the upper ones are checked anyway and saturate the amplitude.
    localparam integer Q_W    = PROD_W;
    localparam integer Z_W    = `LOCKIN_ANGLE_BITS + `LOCKIN_ANGLE_GUARD + 1;
    localparam integer GUARD  = `LOCKIN_ANGLE_GUARD;
    localparam integer SHIFT  = `LOCKIN_AMP_SHIFT;
    localparam [31:0]  SCALE  = `LOCKIN_AMP_SCALE;   // 2^SHIFT * 2^AMP_FRAC * 2 / (G * 32767)
    localparam [AMP_W-1:0] AMP_MAX = {AMP_W{1'b1}};

    // ---- NCO ---------------------------------------------------------------------------------
    /* verilator lint_off UNUSEDSIGNAL */
    wire [PHASE_W-1:0]      nco_phase;   // the drive DAC path may tap it; unused here
    /* verilator lint_on UNUSEDSIGNAL */
    wire signed [REF_W-1:0] ref_sin;
    nco #(.PHASE_W(PHASE_W)) u_nco (
        .clk(clk), .rst(rst), .clear(clear), .advance(sample_valid && !clear),
        .phase_inc(phase_inc), .phase(nco_phase), .ref_cos(ref_cos), .ref_sin(ref_sin)
    );

    // ---- Stage A: take the sample (the NCO table looks up its reference on the same edge) ----
    reg        [DEC_W-1:0] count;       // samples already in the current pixel
    wire       [DEC_W:0]   count_next = {1'b0, count} + 1'b1;
    // >= rather than ==: a decimation lowered below the running count ends the pixel at once.
    wire                   pixel_end  = count_next >= {1'b0, samples_per_pixel};
    reg                    va, last_a;
    reg        [DEC_W-1:0] n_a;
    reg signed [ADC_W-1:0] x_a;

    always @(posedge clk) begin
        if (rst || clear) begin
            va     <= 1'b0;
            last_a <= 1'b0;
            count  <= {DEC_W{1'b0}};
            n_a    <= {DEC_W{1'b0}};
            x_a    <= {ADC_W{1'b0}};
        end else begin
            va <= sample_valid;
            if (sample_valid) begin
                x_a    <= sample;
                last_a <= pixel_end;
                n_a    <= count_next[DEC_W-1:0];
                count  <= pixel_end ? {DEC_W{1'b0}} : count_next[DEC_W-1:0];
            end
        end
    end

    // ---- Stage B: mix (registered products map onto DSP blocks) -------------------------------
    reg                     vb, last_b;
    reg        [DEC_W-1:0]  n_b;
    reg signed [PROD_W-1:0] p_i, p_q;

    always @(posedge clk) begin
        if (rst || clear) begin
            vb     <= 1'b0;
            last_b <= 1'b0;
            n_b    <= {DEC_W{1'b0}};
            p_i    <= {PROD_W{1'b0}};
            p_q    <= {PROD_W{1'b0}};
        end else begin
            vb     <= va;
            last_b <= last_a;
            n_b    <= n_a;
            if (va) begin
                p_i <= x_a * ref_cos;
                p_q <= x_a * ref_sin;
            end
        end
    end

    // ---- Stage C: integrate and dump ------------------------------------------------------------
    reg signed [ACC_W-1:0] i_acc, q_acc, i_dump, q_dump;
    reg        [DEC_W-1:0] n_dump;
    reg                    dump;
    // Q = -sum x sin: then I + jQ ~ (N A 32767 / 2) exp(j phi) for x = A cos(ref + phi).
    wire signed [ACC_W-1:0] i_sum = i_acc + {{(ACC_W-PROD_W){p_i[PROD_W-1]}}, p_i};
    wire signed [ACC_W-1:0] q_sum = q_acc - {{(ACC_W-PROD_W){p_q[PROD_W-1]}}, p_q};

    always @(posedge clk) begin
        dump <= 1'b0;
        if (rst) begin
            i_dump <= {ACC_W{1'b0}};
            q_dump <= {ACC_W{1'b0}};
            n_dump <= {DEC_W{1'b0}};
        end
        if (rst || clear) begin
            i_acc <= {ACC_W{1'b0}};
            q_acc <= {ACC_W{1'b0}};
        end else if (vb) begin
            if (last_b) begin
                i_dump <= i_sum;
                q_dump <= q_sum;
                n_dump <= n_b;
                dump   <= 1'b1;
                i_acc  <= {ACC_W{1'b0}};
                q_acc  <= {ACC_W{1'b0}};
            end else begin
                i_acc <= i_sum;
                q_acc <= q_sum;
            end
        end
    end

    // ---- Per pixel: CORDIC, divide by N, scale ------------------------------------------------
    reg              post_busy;   // a pixel is in the CORDIC / divider / scaler
    reg  [DEC_W-1:0] n_post;
    wire             cordic_start = dump && !post_busy;
    wire             cordic_done, div_done;
    wire [MAG_W-1:0] mag;
    wire signed [Z_W-1:0] angle;
    wire [MAG_W-1:0] quotient;

    cordic #(.IN_W(ACC_W), .Z_W(Z_W)) u_cordic (
        .clk(clk), .rst(rst), .start(cordic_start), .x_in(i_dump), .y_in(q_dump),
        .busy(), .done(cordic_done), .mag(mag), .angle(angle)
    );

    lockin_div #(.N_W(MAG_W), .D_W(DEC_W)) u_div (
        .clk(clk), .rst(rst), .start(cordic_done), .dividend(mag), .divisor(n_post),
        .busy(), .done(div_done), .quotient(quotient), .remainder()
    );

    // Round the guarded angle to the output LSB; the top bits drop, wrapping +180 deg to -180.
    /* verilator lint_off UNUSEDSIGNAL */
    wire signed [Z_W:0] angle_rounded = {angle[Z_W-1], angle} + (1 <<< (GUARD - 1));

    reg                  scale_v, q_over;
    reg  [Q_W+31:0]      amp_prod;
    reg  signed [`LOCKIN_ANGLE_BITS-1:0] phase_s;
    wire [Q_W+31:0]      amp_round = amp_prod + (64'd1 << (SHIFT - 1));  // round half up
    /* verilator lint_on UNUSEDSIGNAL */
    wire [Q_W+31-SHIFT:0] amp_full = amp_round[Q_W+31:SHIFT];

    always @(posedge clk) begin
        out_valid <= 1'b0;
        scale_v   <= 1'b0;
        if (rst) begin
            post_busy <= 1'b0;
            n_post    <= {DEC_W{1'b0}};
            overrun   <= 1'b0;
            q_over    <= 1'b0;
            amp_prod  <= {(Q_W+32){1'b0}};
            phase_s   <= {`LOCKIN_ANGLE_BITS{1'b0}};
            amplitude <= {AMP_W{1'b0}};
            phase     <= {`LOCKIN_ANGLE_BITS{1'b0}};
        end else begin
            if (clear)
                overrun <= 1'b0;
            else if (dump && post_busy)
                overrun <= 1'b1;
            if (cordic_start) begin
                post_busy <= 1'b1;
                n_post    <= n_dump;
            end
            if (div_done) begin
                // Split from the output register so the wide multiply has its own cycle.
                amp_prod <= quotient[Q_W-1:0] * SCALE;
                q_over   <= |quotient[MAG_W-1:Q_W];
                phase_s  <= angle_rounded[GUARD + `LOCKIN_ANGLE_BITS - 1:GUARD];
                scale_v  <= 1'b1;
            end
            if (scale_v) begin
                amplitude <= (q_over || amp_full > AMP_MAX) ? AMP_MAX : amp_full[AMP_W-1:0];
                phase     <= phase_s;
                out_valid <= 1'b1;
                post_busy <= 1'b0;
            end
        end
    end
endmodule
