# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_OUT ?= demo_output

.PHONY: demo test venv lint clean benchmarks gui-shots

venv: $(STAMP)

# One pip resolver run keeps numpy at pyworkflow's exact pin (see ../shared/SCIPION_NOTES.md).
$(STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]" "numpy==1.26.1"
	touch $(STAMP)

demo: $(STAMP)
	MPLBACKEND=Agg $(BIN)/deepalign demo --out $(DEMO_OUT)

# One test file per worker, a worker per core: the two CI cores halve the suite's time.
test: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python -m pytest -q -n auto --dist loadfile scipion_deepalign/tests

lint: $(STAMP)
	$(BIN)/ruff check scipion_deepalign benchmarks

benchmarks: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python benchmarks/run_all.py

# Screenshots of the project window, the forms and the viewer figures into docs/screenshots/
# (needs xvfb-run: apt-get install xvfb; nothing is run).
gui-shots: $(STAMP)
	xvfb-run -a -s "-screen 0 1400x1000x24" $(BIN)/python docs/gui_shots.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) build *.egg-info
