"""Formal proofs (SymbiYosys, through yowasp-sby) of the datapath blocks' stream handshakes."""
