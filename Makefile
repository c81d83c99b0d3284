# gradtext: two commands do all the set-up. `make book` builds the HTML book, `make test` checks everything.
# Both create the virtual environment in .venv when it is missing, with the tested versions in constraints.txt.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.gradtext-installed
VENDOR := _vendor/.complete
# The strict build: warnings, broken references (-n) and failing cells are errors.
JB_STRICT := -W -n --keep-going

.PHONY: help book test lint unit notebooks book-strict lab bench clean clean-all lock env vendor

help:
	@echo "make book    build the HTML book into _build/html (executes every notebook, cached)"
	@echo "make test    ruff, unit tests, notebooks (nbval), output check and a strict book build"
	@echo "make lab     open the chapters in JupyterLab"
	@echo "make bench   run the benchmarks in benchmarks/"
	@echo "make clean   remove build outputs (keeps .venv)"

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[book,test]"
	@touch $(STAMP)

env: $(STAMP)

# MathJax and the widget scripts, served from the book itself so the HTML reads offline.
$(VENDOR): tools/vendor_assets.sh
	bash tools/vendor_assets.sh _vendor

vendor: $(VENDOR)

# --all re-reads every page (the execution cache still skips notebooks whose code is unchanged),
# so the appendix that pastes the chapters' numbers never shows stale ones.
book: $(STAMP) $(VENDOR)
	$(BIN)/jupyter-book build . $(JB_STRICT) --all
	@echo
	@echo "The book is at: file://$(CURDIR)/_build/html/index.html"

lint: $(STAMP)
	$(BIN)/ruff check gradtext tests benchmarks tools book

unit: $(STAMP)
	$(PY) -m pytest tests -q -p no:cacheprovider

notebooks: $(STAMP)
	$(PY) -m pytest --nbval-lax book/ -q -p no:cacheprovider --ignore=book/_build

# CI builds into its own folder with an empty execution cache, so every notebook is executed.
book-strict: $(STAMP) $(VENDOR)
	rm -rf _build/test
	$(BIN)/jupyter-book build . $(JB_STRICT) --path-output _build/test
	$(PY) tools/check_html.py _build/test/_build/html

test: lint unit notebooks book-strict
	@echo "make test: all checks passed"

lab: $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[lab]"
	$(BIN)/jupyter lab book/

# The results are saved in benchmarks/results/ (with the machine and versions), where the
# book's performance appendix reads them; commit them after a run on a quiet machine.
bench: $(STAMP)
	$(PY) benchmarks/monitor_overhead.py --repeats 40 --save benchmarks/results/monitor_overhead.json
	$(PY) benchmarks/clip_speed.py --save benchmarks/results/clip_speed.json
	$(PY) benchmarks/notebook_times.py --save benchmarks/results/notebook_times.json

lock: $(STAMP)
	$(PY) -m pip freeze --exclude-editable | sed 's/^torch==.*/torch==2.13.0/' > constraints.txt.new
	@echo "Review constraints.txt.new, keep its header comment, then move it over constraints.txt."

clean:
	rm -rf _build book/_build .pytest_cache .hypothesis runs

clean-all: clean
	rm -rf $(VENV) _vendor
