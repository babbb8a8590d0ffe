"""cocotb 2.1 benches of the engine's exported Verilog (Icarus and Verilator), driven from pytest
through ``cocotb_tools.runner`` (see :mod:`onda.sim.cocotb.harness`)."""
