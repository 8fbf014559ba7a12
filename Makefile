# Short verbs for the whole project. `make demo` and `make test` do all their own set-up.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
SCENARIO ?= healthy
EPISODES ?= 2000

.PHONY: install install-serve prometheus test test-all lint typecheck demo bench soak train export evaluate

# Everything: serving deps, the `train` extra (torch pinned to the CPU build) and the dev tools.
install:
	$(PIP) install --quiet -e '.[train,dev]'

# Only what the decision service needs (no torch, no stable-baselines3, no gymnasium).
install-serve:
	$(PIP) install --quiet -e .

# Prometheus from the system's package manager, where it has apt.
prometheus:
	@command -v prometheus >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus; \
	  else \
	    echo "Prometheus is missing: install it (https://prometheus.io/download/) and put it on PATH"; exit 1; \
	  fi; }

# The test command the README documents; CI runs exactly this.
test: install prometheus
	$(PYTHON) -m pytest

# Also the slow tests (training smoke runs, long evaluations).
test-all: install prometheus
	$(PYTHON) -m pytest -m ''

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy

typecheck:
	$(PYTHON) -m mypy

demo: install prometheus
	$(PYTHON) -m demo_apps.local.demo --scenario $(SCENARIO)

bench: install prometheus
	$(PYTHON) benchmarks/bench_features.py
	$(PYTHON) benchmarks/bench_service.py
	$(PYTHON) benchmarks/bench_loadgen.py

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

# The shipped policy: two seeds of one config, trained side by side (one core each, ~17 min).
TRAIN_SEEDS ?= 7 11
train: install
	@pids=""; for seed in $(TRAIN_SEEDS); do \
	  $(PYTHON) -m training.train --config training/configs/dqn.yaml \
	    --seed $$seed --run-name dqn5-s$$seed & pids="$$pids $$!"; \
	done; status=0; for pid in $$pids; do wait $$pid || status=1; done; exit $$status

# One ONNX file: the mean Q-values of every seed's best and final checkpoint.
export: install
	$(PYTHON) -m export $(foreach seed,$(TRAIN_SEEDS),--run runs/dqn5-s$(seed)) \
	  --model best_model.zip --model final_model.zip --out models/canary-dqn.onnx

evaluate: install
	$(PYTHON) -m training.evaluate --scenarios scenarios --episodes $(EPISODES) \
	  --json models/evaluation/report.json --episodes-csv models/evaluation/episodes.csv.gz \
	  --plot models/evaluation/report.png
