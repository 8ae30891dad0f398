# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test bench clean lock helm-schema

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	@echo "== The real pipeline: embedded Kafka broker, worker, bundled sample feeds (FHIR + HL7 v2) =="
	$(PY) -m connectors.demo
	@echo
	@echo "== The same feeds coded offline with the sample billing profile and its chargemaster, explained =="
	$(VENV)/bin/infusion-charges code --explain --profile samples/profile-billing.yaml samples/*.json samples/*.ndjson samples/*.hl7

bench: $(STAMP)
	$(PY) benchmarks/bench_coding_core.py
	$(PY) benchmarks/bench_hl7.py
	$(VENV)/bin/infusion-charges bench --quick

# The Helm chart's values.schema.json parts generated from the worker's models (profile, formulary).
helm-schema: $(STAMP)
	$(PY) -m connectors.helm_schema

# Resolve pyproject.toml's version ranges afresh in a scratch environment and lock the result.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e '.[test]'
	{ sed -n '1,/^# make test/p' constraints.txt; .lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^#'; } > constraints.new
	mv constraints.new constraints.txt
	rm -rf .lock-venv
	@echo "constraints.txt rewritten: run make test, then commit it"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
