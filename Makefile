# coaddbliss: `make run` (the paper's protocol), `make demo` (a few minutes on 2 CPUs),
# `make check` (lint + fast tests, the edit loop), `make test` (everything; CI).
# Every target creates or updates the virtual environment .venv first.
# Each config writes under its own root, results/$(RUN)/: RUN=paper is config.yaml alone,
# RUN=demo or RUN=large adds the overlay config/$(RUN).yaml (whose `name:` is the same word).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Cores for snakemake; GPUs visible to it (0 without nvidia-smi: GPU rules then run on the CPU).
CORES ?= all
GPUS ?= $(shell nvidia-smi -L 2>/dev/null | grep -c '^GPU'; true)
# PyTorch for machines without a GPU: the CPU build (a bare `torch` pulls a multi-GB CUDA build).
# On a machine whose pip cannot find a local CPU wheel, add the CPU index, e.g.
#   make TORCH_INDEX="--index-url https://download.pytorch.org/whl/cpu" test
TORCH_CPU ?= torch==2.13.0
TORCH_INDEX ?=
SNAKEMAKE := $(BIN)/snakemake --cores $(CORES) --resources gpu=$(GPUS)
# Which run results-table, targets and report read: paper (config.yaml), demo, large, best; which runs
# compare puts side by side.
RUN ?= paper
RUNS ?= paper best
RUN_CONFIG := $(if $(filter paper,$(RUN)),,--configfile config/$(RUN).yaml)
FAST_TESTS := -m "not slow and not slurm"

.PHONY: all venv run demo best check test lint bench results-table targets compare report

all: run

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	if [ "$(GPUS)" = "0" ] || [ -z "$(GPUS)" ]; then $(BIN)/python -m pip install -q $(TORCH_INDEX) "$(TORCH_CPU)"; fi
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: venv  ## the whole workflow on config.yaml: results/paper/
	$(SNAKEMAKE)

demo: venv  ## the whole workflow on config/demo.yaml: results/demo/
	$(SNAKEMAKE) --configfile config/demo.yaml

best: venv  ## the best encoder settings found (config/best.yaml): results/best/
	$(SNAKEMAKE) --configfile config/best.yaml

check: lint  ## the edit loop (under a minute): lint, then the tests not marked slow or slurm
	$(BIN)/python -m pytest -q $(FAST_TESTS)

# The SLURM tests spend most of their time waiting on the scheduler, so they run beside the
# others (their report is printed after them): about 22 -> 15 min on 2 cores.
test: venv  ## everything: unit tests, workflow tests (the demo end to end), SLURM test
	@slurm_log=$$(mktemp); \
	$(BIN)/python -m pytest -ra --durations=5 -m slurm -p no:cacheprovider > $$slurm_log 2>&1 & \
	slurm_pid=$$!; \
	$(BIN)/python -m pytest -ra --durations=15 -m "not slurm"; rc=$$?; \
	wait $$slurm_pid; slurm_rc=$$?; \
	echo "=============== the SLURM tests (run beside the others above) ==============="; \
	cat $$slurm_log; rm -f $$slurm_log; \
	test $$rc -eq 0 && test $$slurm_rc -eq 0

lint: venv
	$(BIN)/ruff check src tests workflow/scripts benchmarks
	$(BIN)/ruff format --check src tests workflow/scripts benchmarks
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint

bench: venv  ## speed benchmarks: print figures for the README's performance section
	$(BIN)/python benchmarks/bench_simulate.py
	cd benchmarks && ../$(BIN)/python bench_train.py && ../$(BIN)/python bench_infer.py
	$(BIN)/python benchmarks/bench_baseline.py

results-table: venv  ## the README's results table from a finished run: make results-table RUN=demo
	$(BIN)/python -m coaddbliss.report results/$(RUN)/metrics/metrics.parquet --readme

targets: venv  ## every target of the encoder, met or not, from a finished run: make targets RUN=best
	$(BIN)/python -m coaddbliss.targets results/$(RUN)

compare: venv  ## finished runs side by side: make compare RUNS="paper best"
	$(BIN)/python -m coaddbliss.report --compare $(foreach r,$(RUNS),results/$(r)/metrics/metrics.parquet)

report: venv  ## HTML report of a finished run, results/$(RUN)/report.html: make report RUN=demo
	$(BIN)/snakemake --report results/$(RUN)/report.html $(RUN_CONFIG)
