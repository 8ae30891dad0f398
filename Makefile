# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	@echo "== The real pipeline: embedded Kafka broker, worker, bundled sample feeds (FHIR + HL7 v2) =="
	$(PY) -m connectors.demo
	@echo
	@echo "== The same feeds coded offline, explained (infusion-charges code --explain) =="
	$(VENV)/bin/infusion-charges code --explain samples/*.json samples/*.ndjson samples/*.hl7

bench: $(STAMP)
	$(PY) benchmarks/bench_coding_core.py
	$(PY) benchmarks/bench_hl7.py
	$(VENV)/bin/infusion-charges bench --quick

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
