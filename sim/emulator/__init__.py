"""The ISA emulator: runs engine programs functionally (bit-exact) and through a cycle model."""
