// Behavioural model of the subset of Lattice ECP5's MULT18X18D that onda.hw.datapath.dsp
// instantiates: P = A * B (both signed when SIGNEDA/SIGNEDB are 1, both unsigned when 0),
// optional input registers (REG_INPUTA_CLK / REG_INPUTB_CLK = "CLK0") and output register
// (REG_OUTPUT_CLK = "CLK0"), each loaded on CLK0's rising edge when CE0 is 1, and synchronous
// reset by RST0. Written from the ECP5 sysDSP usage guide (FPGA-TN-02205) for simulation of the
// ECP5 elaboration only: any other configuration stops the simulation instead of guessing.
`default_nettype none
module MULT18X18D (
    input wire A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0,
    input wire B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0,
    input wire C17, C16, C15, C14, C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0,
    input wire SIGNEDA, SIGNEDB, SOURCEA, SOURCEB,
    input wire CLK3, CLK2, CLK1, CLK0, CE3, CE2, CE1, CE0, RST3, RST2, RST1, RST0,
    output wire P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20,
    output wire P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3,
    output wire P2, P1, P0
);
    parameter REG_INPUTA_CLK = "NONE";
    parameter REG_INPUTA_CE = "CE0";
    parameter REG_INPUTA_RST = "RST0";
    parameter REG_INPUTB_CLK = "NONE";
    parameter REG_INPUTB_CE = "CE0";
    parameter REG_INPUTB_RST = "RST0";
    parameter REG_INPUTC_CLK = "NONE";
    parameter REG_INPUTC_CE = "CE0";
    parameter REG_INPUTC_RST = "RST0";
    parameter REG_PIPELINE_CLK = "NONE";
    parameter REG_PIPELINE_CE = "CE0";
    parameter REG_PIPELINE_RST = "RST0";
    parameter REG_OUTPUT_CLK = "NONE";
    parameter REG_OUTPUT_CE = "CE0";
    parameter REG_OUTPUT_RST = "RST0";
    parameter CLK0_DIV = "ENABLED";
    parameter CLK1_DIV = "ENABLED";
    parameter CLK2_DIV = "ENABLED";
    parameter CLK3_DIV = "ENABLED";
    parameter HIGHSPEED_CLK = "NONE";
    parameter GSR = "ENABLED";
    parameter CAS_MATCH_REG = "FALSE";
    parameter SOURCEB_MODE = "B_SHIFT";
    parameter MULT_BYPASS = "DISABLED";
    parameter RESETMODE = "SYNC";

    wire [17:0] a = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0};
    wire [17:0] b = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0};

    initial begin
        if ((REG_INPUTA_CLK != "NONE" && (REG_INPUTA_CLK != "CLK0" || REG_INPUTA_CE != "CE0" || REG_INPUTA_RST != "RST0")) ||
            (REG_INPUTB_CLK != "NONE" && (REG_INPUTB_CLK != "CLK0" || REG_INPUTB_CE != "CE0" || REG_INPUTB_RST != "RST0")) ||
            (REG_OUTPUT_CLK != "NONE" && (REG_OUTPUT_CLK != "CLK0" || REG_OUTPUT_CE != "CE0" || REG_OUTPUT_RST != "RST0")) ||
            REG_PIPELINE_CLK != "NONE" || MULT_BYPASS != "DISABLED" || RESETMODE != "SYNC") begin
            $display("MULT18X18D model: unmodelled configuration");
            $finish;
        end
    end

    reg [17:0] a_r = 0, b_r = 0;
    reg signed_r = 0;
    always @(posedge CLK0) begin
        if (RST0) begin
            a_r <= 0; b_r <= 0;
        end else if (CE0) begin
            a_r <= a; b_r <= b;
        end
    end
    wire [17:0] a_m = (REG_INPUTA_CLK == "NONE") ? a : a_r;
    wire [17:0] b_m = (REG_INPUTB_CLK == "NONE") ? b : b_r;
    // Signedness as the operands': the datapath ties SIGNEDA and SIGNEDB to constants.
    wire [35:0] a_x = SIGNEDA ? {{18{a_m[17]}}, a_m} : {18'b0, a_m};
    wire [35:0] b_x = SIGNEDB ? {{18{b_m[17]}}, b_m} : {18'b0, b_m};
    wire [35:0] prod = a_x * b_x;
    reg [35:0] p_r = 0;
    always @(posedge CLK0) begin
        if (RST0) p_r <= 0;
        else if (CE0) p_r <= prod;
    end
    wire [35:0] p = (REG_OUTPUT_CLK == "NONE") ? prod : p_r;
    assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20,
            P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3,
            P2, P1, P0} = p;
endmodule
`default_nettype wire
