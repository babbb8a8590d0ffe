# onda: `make demo` (the main job) and `make test` (the test suite) each set themselves up.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stamp-setup
APT_PACKAGES := iverilog g++ make nodejs npm
NODE_CLIENT := host/client/node
NODE_STAMP := $(NODE_CLIENT)/node_modules/.package-lock.json
PYTEST_WORKERS ?= 2

.PHONY: setup test test-slow bench sim formal synth synth-datapath demo clean

setup: $(STAMP) $(NODE_STAMP)

# Debian packages (only what PyPI cannot provide). A package counts as present when dpkg has it or an installed
# package provides it (a Node.js build that bundles npm provides "npm"); only missing ones are installed.
define APT_INSTALL
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || \
	  dpkg-query -W -f='$${db:Status-Abbrev} $${Provides}\n' 2>/dev/null | grep -qE "^ii .*[ ,]$$p([ ,(]|$$)" || \
	  missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "setup: apt-get install$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

# The Debian packages, then the venv and the editable install.
$(STAMP): pyproject.toml
	$(APT_INSTALL)
	@test -x $(PY) || python3 -m venv $(VENV)
	@echo "setup: pip install -e .[dev] (first run takes a minute)"
	@$(PY) -m pip install -q --upgrade pip >/dev/null
	@$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# The Node.js client's packages (@grpc/grpc-js, @grpc/proto-loader), exactly as package-lock.json pins them.
$(NODE_STAMP): $(NODE_CLIENT)/package-lock.json $(NODE_CLIENT)/package.json
	$(APT_INSTALL)
	@echo "setup: npm ci in $(NODE_CLIENT)"
	@cd $(NODE_CLIENT) && npm ci --no-audit --no-fund --loglevel=error >/dev/null
	@touch $@

# --dist loadgroup: tests marked xdist_group (the Ray cluster tests: one local cluster a module) stay on one
# worker; every other test is spread as before.
test: setup
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup -m "not slow" tests

test-slow: setup
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup -m slow tests

bench: setup
	$(PY) -m onda.host.bench.numeric
	$(PY) -m onda.host.bench.service
	$(PY) -m onda.host.bench.cluster
	$(PY) -m onda.host.bench.compile_report
	$(PY) -m onda.sim.bench_datapath
	$(PY) -m onda.host.bench.rtl
	$(PY) -m onda.host.bench.board

# The main command: build the default ResNet50 pipeline (cached in build/demo), deploy it, score the sample
# photos over TLS with a key, remove the service.
demo: setup
	$(PY) -m onda.host.demo

# Every RTL bench: the datapath (Amaranth sim + cocotb on Icarus and Verilator) and the whole engine
# (Amaranth-sim unit tests of each block, compiled programs on the Verilator-built engine and under cocotb
# on Icarus and Verilator: tests/engine/test_cocotb_engine.py),
# SymbiYosys proofs of the stream handshakes (datapath and engine blocks), and synthesis reports per board.
BOARD ?= ulx3s-85f
HW_BENCHES := tests/hw/test_gemm.py tests/hw/test_requantize.py tests/hw/test_requantize_double.py \
	tests/hw/test_vector.py tests/hw/test_buffers.py tests/hw/test_conv_tile_timing.py \
	tests/hw/test_cocotb_datapath.py tests/engine

sim: setup
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(HW_BENCHES)

formal: setup
	$(PY) -m onda.sim.formal.stream_props
	$(PY) -m onda.sim.formal.token_props
	$(PY) -m onda.sim.formal.engine_stream_props

# The whole board top (engine, memory, host link, PLL) into bitstreams/$(BOARD)/ (ULX3S: most of an hour).
synth: setup
	$(PY) -m onda.hw.synth.flow --board $(BOARD)

# The LFSR-fed datapath probe alone (bitstreams/$(BOARD)/datapath-*).
synth-datapath: setup
	$(PY) -m onda.hw.synth.flow --board $(BOARD) --datapath

clean:
	rm -rf build out .pytest_cache
