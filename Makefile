# The two commands: `make run` and `make test`. Everything else is set up by them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install install-test migrate lint format constraints clean messages

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"
	touch $(VENV)/.installed $@

# The translations (locale/*/LC_MESSAGES/*.po) compiled to the .mo files Django reads; the
# .mo files are built here, not kept in git. Needs gettext's msgfmt (Debian: gettext).
MO_FILES := $(patsubst %.po,%.mo,$(wildcard locale/*/LC_MESSAGES/*.po))

$(MO_FILES): %.mo: %.po | $(BIN)/python
	$(BIN)/python manage.py compilemessages --ignore $(VENV) --ignore var --locale $(word 2,$(subst /, ,$@))

messages: $(MO_FILES)

install: $(VENV)/.installed $(MO_FILES)

install-test: $(VENV)/.installed-test $(MO_FILES)

migrate: install
	$(BIN)/python manage.py migrate --noinput

run: migrate
	$(BIN)/python -m calpico.serve -b $(HOST) -p $(PORT) calpico.asgi:application

test: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install-test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# After changing dependencies in pyproject.toml: install the newest allowed versions, run
# `make test`, then record what passed.
constraints: | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade -e ".[test]"
	$(BIN)/pip freeze --exclude-editable | grep -v '^#' > constraints.txt

clean:
	rm -rf $(VENV) var/static $(MO_FILES)
