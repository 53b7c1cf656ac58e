# The two Quick-start commands (README) and a few helpers. Every target runs the idempotent
# set-up first, so a fresh machine needs nothing else.
PY := .venv/bin/python
HOST ?= 127.0.0.1
PORT ?= 7860

.PHONY: setup app test lab bench clean-notebooks

setup:
	@bash scripts/setup.sh

app: setup
	$(PY) -m molmoact2 app --host $(HOST) --port $(PORT)

test: setup
	$(PY) -m pytest -p no:dash --nbmake tests notebooks -q -rs --durations=15

# Our machines run as root; JupyterLab refuses root unless told.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: setup
	$(PY) -m jupyter lab --ip 127.0.0.1 --no-browser --notebook-dir notebooks $(ROOT_FLAG)

bench: setup
	@for f in bench/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

# Notebooks are committed without outputs; run this before committing one you executed.
clean-notebooks: setup
	$(PY) -m jupyter nbconvert --clear-output --inplace notebooks/*.ipynb
