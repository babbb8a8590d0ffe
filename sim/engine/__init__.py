"""Simulation models of what surrounds the engine RTL in Amaranth-sim testbenches (the memory
behind its memory port)."""
