# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.12
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test venv quick bench clean constraints

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	@touch $(STAMP)

# re-pin after a deliberate upgrade: every installed version except bayes-nqp itself
constraints:
	@{ sed -n '1,/^# (bayes-nqp itself/p' constraints.txt; \
	   $(PY) -m pip freeze --exclude-editable | grep -v '^#' | grep -iv '^bayes-nqp'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

venv: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/bayes-nqp run --out reports

quick: $(STAMP)
	$(VENV)/bin/bayes-nqp run --quick --out reports

# two pytest workers (pytest-xdist), one test module each at a time: a module's fixtures are
# fitted once; the suite is bound by numba compiling each model, one core per compile
test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider --timeout=900 -n 2 --dist loadfile

# speed targets are measured here, not in tests; results land in benchmarks/results/*.json
bench: $(STAMP)
	$(PY) benchmarks/bench_hansen.py
	$(PY) benchmarks/bench_did.py
	$(PY) benchmarks/bench_sensitivity.py
	$(PY) benchmarks/bench_run.py
	$(PY) benchmarks/bench_engine.py
	$(PY) benchmarks/bench_scale.py
	$(PY) benchmarks/bench_sbc.py

clean:
	rm -rf $(VENV) build src/*.egg-info
