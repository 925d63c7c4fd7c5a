# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: a looser spec on a fresh env pulls a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	# distributed: Ray, PB2's scikit-learn, tensorboard; CI runs the Ray paths on a local 2-CPU Ray.
	$(PY) -m pip install --quiet -e '.[dev,distributed]'
	# the C kernels (fused steps, Optim4RL's optimizer), built once per machine here rather than inside the first run
	$(PY) -c "from agents import native; print('native kernel:', 'built' if native.fused_step() else 'not built: the NumPy steps serve')"
	$(PY) -c "from solvers.optim4rl import kernel; print('optim4rl kernel:', 'built' if kernel.library() else 'not built: the torch maths serve')"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/hyperrl demo --out reports/demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/ppo_speed.py
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/import_cost.py
	$(PY) -m pytest -q benchmarks/test_hyperstep_benchmark.py benchmarks/test_fused_step_benchmark.py --benchmark-only

lint: $(STAMP)
	$(VENV)/bin/ruff check agents hyperenvs solvers tests benchmarks
	$(VENV)/bin/ruff format --check agents hyperenvs solvers tests benchmarks

clean:
	rm -rf $(VENV) reports
