# Quick start: `make run` and `make test`. Everything else is optional.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT := $${NFOD_PORT:-8000}
ADMIN_USER := $${NFOD_ADMIN_USERNAME:-admin}
ADMIN_PASSWORD := $${NFOD_ADMIN_PASSWORD:-change-me-admin}

.PHONY: run test install migrate demo lint format bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

migrate: $(STAMP)
	$(BIN)/nfod migrate

# Serves on 127.0.0.1:$${NFOD_PORT:-8000} with a local SQLite database (nfod.db). The first
# administrator is created from NFOD_ADMIN_USERNAME / NFOD_ADMIN_PASSWORD (defaults below)
# when the database has no users yet.
run: $(STAMP)
	$(BIN)/nfod migrate
	@echo ""
	@echo "NFOD Response on http://127.0.0.1:$(PORT)"
	@echo "  API docs:    http://127.0.0.1:$(PORT)/docs"
	@echo "  Web client:  http://127.0.0.1:$(PORT)/app/"
	@echo "  Sign in as:  $(ADMIN_USER) / $(ADMIN_PASSWORD)  (first administrator, made when the database has no users)"
	@echo "  Token:       curl -d 'username=$(ADMIN_USER)&password=...' http://127.0.0.1:$(PORT)/v1/auth/token"
	@echo "  Demo data:   $(BIN)/nfod demo  (into an empty database)"
	@echo ""
	NFOD_ADMIN_USERNAME=$(ADMIN_USER) NFOD_ADMIN_PASSWORD=$(ADMIN_PASSWORD) \
	  $(BIN)/nfod serve --port $(PORT)

# The whole suite (SQLite unless NFOD_TEST_DATABASE_URL is set). pytest's exit status 5
# ("no tests collected") is a failure here, with a message, never a silent pass.
test: $(STAMP)
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	  exit $$rc

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
