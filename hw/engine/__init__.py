"""The onda engine: the Amaranth hardware that executes compiled programs (``hw/ISA.md``).

One ``wiring.Component`` per block: fetch and decode, dependency-token queues, load and store DMA on
one memory port, the GEMM and VEC sequencers around the datapath (``onda.hw.datapath``), and the
control and status registers the host drives. Every block is parametrized by the engine
configuration (``onda.hw.config.EngineConfig``) alone.
"""
