"""Board-level hardware around the engine: the ULX3S SDR SDRAM controller and its chips."""
