"""Simulation models of board parts (the SDR SDRAM at its pins) and their benchmarks."""
