"""The FPGA controller: Verilog RTL, its spec header, cocotb testbenches and the simulator runner."""
