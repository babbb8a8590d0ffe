"""Board builds: the synthesis flow (``flow.py``: YoWASP Yosys and nextpnr through amaranth-boards,
reports in ``bitstreams/<board>/``) and the tops it builds (``datapath_probe.py``: the datapath fed
by an LFSR, folded to the LEDs)."""
