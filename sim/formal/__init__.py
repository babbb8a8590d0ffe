"""Formal proofs (SymbiYosys, through yowasp-sby): the datapath blocks' and the engine blocks'
stream handshakes, and the token counters."""
