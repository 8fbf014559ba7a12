# Short verbs for the whole project. `make demo` and `make test` do all their own set-up:
# a project virtualenv in $(VENV) that every target runs in (nothing goes into the system's
# Python, which Debian 12+, Ubuntu 24.04 and Homebrew refuse anyway: PEP 668), the package
# installed into it with the extras the target needs, and Prometheus where there is none.

# The Python the virtualenv is made from (>= 3.11). Nothing is installed into it.
BASE_PYTHON ?= python3
VENV ?= .venv
# What every target runs: the virtualenv's Python and pip (not taken from the environment).
PYTHON := $(VENV)/bin/python
PIP := $(PYTHON) -m pip
# torch for the `train` extra comes from PyTorch's CPU wheel index, not the multi-GB CUDA build
# PyPI serves on Linux. It is installed alone first, with only this index added: pip asks every
# index for every package it installs, and retries one that does not answer. Empty: no extra
# index (.ci/run: its machine has the CPU wheel where pip finds it and no route to the index).
TORCH_INDEX_URL ?= https://download.pytorch.org/whl/cpu
TORCH_REQUIREMENT := $(shell grep -o '"torch *[=<>~!][^"]*"' pyproject.toml | tr -d '"')
SCENARIO ?= healthy
EPISODES ?= 2000

# The demo, the tests and the benchmarks run PROMETHEUS_BIN, else `prometheus` on PATH: point
# them at the release `make prometheus` downloaded into .cache/ when that is the one there is
# (worked out when each command runs, so after `prometheus` has run).
export PROMETHEUS_BIN ?= $(shell scripts/install-prometheus.sh --which)

.PHONY: install install-serve install-demo prometheus test test-all lint typecheck demo bench soak train export evaluate

# Everything: serving deps, the `train` extra (torch pinned to the CPU build) and the dev tools.
install: $(VENV)/.installed-all

# Only what the decision service needs (no torch, no stable-baselines3, no gymnasium).
install-serve: $(VENV)/.installed-serve

# What `make demo` needs: the serving deps and matplotlib for the timeline (no torch).
install-demo: $(VENV)/.installed-demo

# The virtualenv. Debian and Ubuntu ship Python's venv/ensurepip apart, in python3-venv.
$(VENV)/.created:
	@$(BASE_PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "make: $(BASE_PYTHON) is missing or older than Python 3.11: run make BASE_PYTHON=python3.X (3.11 or newer)" >&2; exit 1; }
	@echo "$(BASE_PYTHON) -m venv $(VENV)"
	@$(BASE_PYTHON) -m venv --clear $(VENV) || { rm -rf $(VENV); \
	  echo "make: '$(BASE_PYTHON) -m venv' failed. On Debian/Ubuntu install Python's venv module:" >&2; \
	  echo "  sudo apt-get install python3-venv   (for $(BASE_PYTHON) exactly: $$($(BASE_PYTHON) -c 'import sys; print("python%d.%d-venv" % sys.version_info[:2])'))" >&2; \
	  exit 1; }
	$(PYTHON) -m pip --version
	@touch $@

# One stamp per set of extras: installed again only when pyproject.toml changes.
$(VENV)/.installed-all: pyproject.toml $(VENV)/.created
ifneq ($(TORCH_INDEX_URL),)
	$(PIP) install --quiet --no-deps --extra-index-url '$(TORCH_INDEX_URL)' '$(TORCH_REQUIREMENT)'
endif
	$(PIP) install --quiet -e '.[train,dev]'
	@touch $@

$(VENV)/.installed-serve: pyproject.toml $(VENV)/.created
	$(PIP) install --quiet -e .
	@touch $@

$(VENV)/.installed-demo: pyproject.toml $(VENV)/.created
	$(PIP) install --quiet -e '.[demo]'
	@touch $@

# Prometheus on PATH; else the distribution's package (apt, with sudo when not root); else the
# pinned release, checksum-verified, into .cache/prometheus/ (scripts/install-prometheus.sh).
prometheus:
	@scripts/install-prometheus.sh >/dev/null

# The test command the README documents; CI runs exactly this.
test: install prometheus
	$(PYTHON) -m pytest

# Also the slow tests (training smoke runs, long evaluations).
test-all: install prometheus
	$(PYTHON) -m pytest -m ''

lint: install
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy

typecheck: install
	$(PYTHON) -m mypy

demo: install-demo prometheus
	$(PYTHON) -m demo_apps.local.demo --scenario $(SCENARIO)

bench: install prometheus
	$(PYTHON) benchmarks/bench_features.py
	$(PYTHON) benchmarks/bench_service.py
	$(PYTHON) benchmarks/bench_prometheus_http.py
	$(PYTHON) benchmarks/bench_canary_age.py
	$(PYTHON) benchmarks/bench_aged_canary.py
	$(PYTHON) benchmarks/bench_loadgen.py
	$(PYTHON) benchmarks/bench_app.py --scenario healthy --concurrency 256

# Longer load (~3 min): concurrency 64 and 256 for 30 s each, then Prometheus stalled for 10 s;
# errors, p99, RSS before and after, recovery. Figures only (README, "Hardening and soak").
soak: install prometheus
	$(PYTHON) benchmarks/soak.py

# Replay parity (~30 min): PARITY_EPISODES library episodes per scenario written as Prometheus
# history (promtool), replayed through the service's queries and pipeline; decision agreement
# and the largest difference per feature. Figures only (README, "Replay parity").
PARITY_EPISODES ?= 200
.PHONY: replay-parity
replay-parity: install prometheus
	$(PYTHON) benchmarks/replay_parity.py --episodes $(PARITY_EPISODES) \
	  --json runs/replay-parity/report.json

# The shipped policy: two seeds of one config, trained side by side (one core each).
TRAIN_SEEDS ?= 7 11
RUN_PREFIX ?= dqn12
train: install
	@pids=""; for seed in $(TRAIN_SEEDS); do \
	  $(PYTHON) -m training.train --config training/configs/dqn.yaml \
	    --seed $$seed --run-name $(RUN_PREFIX)-s$$seed & pids="$$pids $$!"; \
	done; status=0; for pid in $$pids; do wait $$pid || status=1; done; exit $$status

# One ONNX file: the mean Q-values of every seed's best and final checkpoint.
export: install
	$(PYTHON) -m export $(foreach seed,$(TRAIN_SEEDS),--run runs/$(RUN_PREFIX)-s$(seed)) \
	  --model best_model.zip --model final_model.zip --out models/canary-dqn.onnx

# The library, the held-out files and the stress suite, every agent on the same episodes; then
# the operating characteristic of the shipped decision stack.
evaluate: install
	$(PYTHON) -m training.evaluate --scenarios scenarios --scenarios scenarios/holdout \
	  --episodes $(EPISODES) --stress $(EPISODES) \
	  --json models/evaluation/report.json --episodes-csv models/evaluation/episodes.csv.gz \
	  --plot models/evaluation/report.png --markdown models/evaluation/report.md
	$(PYTHON) -m training.operating --out models/evaluation/operating.png
