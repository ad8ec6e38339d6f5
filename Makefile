# weightprep: `make demo` and `make test` each install what they need on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Pinned here, not in pyproject.toml: on this project's machines torch==2.13.0 is a CPU wheel on
# local disk, while an unpinned torch pulls a multi-GB CUDA build. GPU users keep their own torch.
TORCH  := torch==2.13.0
PEERS  := .peers
# The last transformers that ships convert_llama_weights_to_hf.py: the converter's reference.
REF    := $(PEERS)/transformers-4.47.1
# LAVIS pins transformers==4.33.2: the "old transformers" our outputs must load in.
OLD    := $(PEERS)/transformers-4.33.2
# FastChat's apply_delta, the delta step's reference; only what it imports (no server deps).
FC     := $(PEERS)/fastchat-0.2.36
# LAVIS's environment: transformers==4.33.2 and what pip resolves beside it, with weightprep's own
# runtime dependencies (no transformers of its own). weightprep itself goes in at test time, from
# a wheel built from the checkout (tests/test_lavis_env.py), so the wheel always matches the code.
LAVIS  := $(PEERS)/lavis-env
DEMO   := demo-output
SMOKE  := smoke-output
# `make smoke-test LLM=... WEIGHTS=... MODEL=...` runs the real thing; with neither, the example.
MODEL  ?= instructblip-vicuna7b
LLM    ?=
WEIGHTS ?=

.PHONY: install peers browser test test-fast test-faults demo smoke-test bench bench-delta bench-hash bench-language bench-onepass bench-publish lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check $(TORCH)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

$(REF)/.installed: Makefile
	$(PYTHON) -m venv $(REF)
	$(REF)/bin/pip install -q --disable-pip-version-check $(TORCH)
	$(REF)/bin/pip install -q --disable-pip-version-check transformers==4.47.1 sentencepiece protobuf accelerate
	touch $@

$(OLD)/.installed: Makefile
	$(PYTHON) -m venv $(OLD)
	$(OLD)/bin/pip install -q --disable-pip-version-check $(TORCH)
	$(OLD)/bin/pip install -q --disable-pip-version-check transformers==4.33.2 sentencepiece protobuf
	touch $@

$(FC)/.installed: Makefile
	$(PYTHON) -m venv $(FC)
	$(FC)/bin/pip install -q --disable-pip-version-check $(TORCH)
	$(FC)/bin/pip install -q --disable-pip-version-check --no-deps fschat==0.2.36
	$(FC)/bin/pip install -q --disable-pip-version-check transformers==4.47.1 accelerate sentencepiece protobuf requests
	touch $@

$(LAVIS)/.installed: Makefile pyproject.toml
	$(PYTHON) -m venv $(LAVIS)
	$(LAVIS)/bin/pip install -q --disable-pip-version-check $(TORCH)
	$(PYTHON) -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > $(LAVIS)/weightprep-deps.txt
	$(LAVIS)/bin/pip install -q --disable-pip-version-check transformers==4.33.2 'setuptools>=68' wheel -r $(LAVIS)/weightprep-deps.txt
	touch $@

peers: $(REF)/.installed $(OLD)/.installed $(FC)/.installed $(LAVIS)/.installed

# The smoke-test report is checked in a real headless browser (tests/test_smoke_report.py).
browser:
	@test -x /usr/bin/chromium || (apt-get update -q && apt-get install -y -q chromium)

test: install peers browser
	WEIGHTPREP_PEERS=$(abspath $(PEERS)) $(BIN)/pytest

# The long kill sweep: SIGKILL at 20 points of every command that writes (tests/faults).
test-faults: install
	WEIGHTPREP_FAULT_POINTS=20 $(BIN)/pytest tests/faults -q

# Everything but the peer virtualenvs (their tests skip, saying why).
test-fast: install
	$(BIN)/pytest -m "not peer"

demo: install
	rm -rf $(DEMO)
	HF_HUB_OFFLINE=1 $(BIN)/weightprep run example --workdir $(DEMO)
	cd $(DEMO)/vicuna && sha256sum -c --quiet SHA256SUMS && echo "vicuna: SHA256SUMS all files OK"
	$(BIN)/python scripts/demo_generate.py $(DEMO)/vicuna
	@echo "--- the run record ($(DEMO)/RUN.md; run.json has the same as JSON) ---"
	@cat $(DEMO)/RUN.md
	@echo "--- the smoke test's report (images, answers, checks): $(abspath $(DEMO))/smoke-report.html"

smoke-test: install
ifeq ($(LLM)$(WEIGHTS),)
	@echo "smoke-test: no LLM= or WEIGHTS= given: running the built-in tiny example (no downloads)"
	rm -rf $(SMOKE)
	$(BIN)/weightprep make-example $(SMOKE)/LLaMA --quiet
	$(BIN)/weightprep convert-llama $(SMOKE)/LLaMA $(SMOKE)/llama-7b-hf --model-size 7B --quiet
	$(BIN)/weightprep make-example-delta $(SMOKE)/llama-7b-hf $(SMOKE)/tiny-delta --quiet
	$(BIN)/weightprep apply-delta $(SMOKE)/llama-7b-hf $(SMOKE)/tiny-delta $(SMOKE)/tiny-vicuna --verify --manifest $(SMOKE)/tiny-delta/expected.yaml --quiet
	$(BIN)/weightprep make-example-vlm $(SMOKE)/tiny-instructblip --llm $(SMOKE)/tiny-vicuna --quiet
	HF_HUB_OFFLINE=1 $(BIN)/weightprep smoke-test --example --model instructblip-vicuna7b --llm $(SMOKE)/tiny-vicuna --weights $(SMOKE)/tiny-instructblip --max-new-tokens 24 --report $(SMOKE)/report.html
else
	$(BIN)/weightprep smoke-test --model $(MODEL) $(if $(LLM),--llm $(LLM)) $(if $(WEIGHTS),--weights $(WEIGHTS))
endif

bench: install peers
	$(BIN)/python bench/convert.py --ref-python $(REF)/bin/python

bench-delta: install peers
	$(BIN)/python bench/delta.py --fastchat-python $(FC)/bin/python

bench-hash: install
	$(BIN)/python bench/hash.py

bench-publish: install
	$(BIN)/python bench/publish.py

bench-language: install
	$(BIN)/python bench/language.py

# LLaMA-7B-shaped inputs (27 GB, cached in bench/out/onepass); needs ~55 GB free, 10-25 minutes.
bench-onepass: install
	$(BIN)/python bench/onepass.py

lint: install
	$(BIN)/ruff check weightprep tests bench scripts
	$(BIN)/ruff format --check weightprep tests bench scripts

clean:
	rm -rf $(VENV) $(PEERS) $(DEMO) $(SMOKE) bench/out .pytest_cache
