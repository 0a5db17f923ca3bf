# Quick start: `make run` and `make test`. Everything else is optional.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install migrate demo lint format bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

migrate: $(STAMP)
	$(BIN)/nfod migrate

# Serves on 127.0.0.1:$${NFOD_PORT:-8000} with a local SQLite database (nfod.db).
run: $(STAMP)
	$(BIN)/nfod migrate
	@NFOD_ADMIN_USERNAME=$${NFOD_ADMIN_USERNAME:-admin} NFOD_ADMIN_PASSWORD=$${NFOD_ADMIN_PASSWORD:-change-me-admin} \
	  $(BIN)/python -c "print('First sign-in: admin / ' + __import__('os').environ['NFOD_ADMIN_PASSWORD'] + '   (demo data: .venv/bin/nfod demo)')"
	NFOD_ADMIN_USERNAME=$${NFOD_ADMIN_USERNAME:-admin} NFOD_ADMIN_PASSWORD=$${NFOD_ADMIN_PASSWORD:-change-me-admin} \
	  $(BIN)/nfod serve --port $${NFOD_PORT:-8000}

# The whole suite (SQLite unless NFOD_TEST_DATABASE_URL is set).
test: $(STAMP)
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/nfod migrate
	$(BIN)/nfod demo

lint: $(STAMP)
	$(BIN)/ruff check api services models tests
	$(BIN)/ruff format --check api services models tests

format: $(STAMP)
	$(BIN)/ruff format api services models tests
	$(BIN)/ruff check --fix api services models tests

bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) nfod.db nfod.db-wal nfod.db-shm
