# Two commands on a fresh machine: `make demo` runs the main job, `make test` the tests.
# Each creates .venv if it is missing. TORCH pins the CPU wheel; for a GPU build, e.g.
#   make demo TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
# the demo's training budget in minutes; an existing run in runs/dsprites is reused
MINUTES ?= 5
BIN := $(VENV)/bin

.PHONY: demo test bench clean

$(BIN)/cq: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev,peer]'
	touch $@

demo: $(BIN)/cq
	$(BIN)/cq data resample --dag dags/dsprites.yaml --n 200000 --seed 0 --out runs/data/dsprites.npz
	$(BIN)/cq data check --dag dags/dsprites.yaml --data runs/data/dsprites.npz
	$(BIN)/cq train --dag dags/dsprites.yaml --out runs/dsprites --minutes $(MINUTES) --resume
	test -f runs/dsprites/oracles.pt || $(BIN)/cq train-oracles --model runs/dsprites
	$(BIN)/cq query queries/*.cq --model runs/dsprites --out runs/answers

test: $(BIN)/cq
	$(BIN)/python -m pytest

bench: $(BIN)/cq
	$(BIN)/python benchmarks/run_all

clean:
	rm -rf $(VENV) runs
