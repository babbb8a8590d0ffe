"""The engine's datapath blocks: MAC array, requantizer, vector unit, buffers (see README.md)."""
