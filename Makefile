# node_agent: `make demo` and `make test` set up everything they need on a fresh
# Debian machine with python3 and npm (system tools via apt-get).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-unit deps lint bench-sync bench-render bench-scale clean azurite-start azurite-stop

$(BIN)/node-agent: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

node_modules/.bin/azurite-blob: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

.PHONY: .sysdeps
.sysdeps:
	bash scripts/system-deps.sh

deps: $(BIN)/node-agent node_modules/.bin/azurite-blob .sysdeps

demo: deps
	$(BIN)/python examples/demo.py

test: deps lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

# the pure part (no Azurite, no renderer, no subprocess): seconds, for the edit-test loop
test-unit: $(BIN)/node-agent
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit

lint: deps
	$(BIN)/ruff check node_agent tests bench
	$(BIN)/ruff format --check node_agent tests bench
	$(BIN)/mypy

# the bundled Azurite for your own project (docs/local-project.md); data in
# ~/.local/state/node-agent/azurite, port 10000 (or a free one), left running until stop
azurite-start: $(BIN)/node-agent node_modules/.bin/azurite-blob
	$(BIN)/node-agent azurite start

azurite-stop: $(BIN)/node-agent
	$(BIN)/node-agent azurite stop

clean:
	rm -rf $(VENV) node_modules .localpool demo-out examples/scene

# datasets a (10,000 x 20 KB) and b (16 x 64 MB) with 5 repetitions against rclone copy, rclone
# sync (which deletes, as a job view does: the 1 % changed target) and an SDK loop, then c (100,000 x 2 KB:
# time and peak memory) once: each of its runs takes minutes
bench-sync: deps
	$(BIN)/python bench/bench_sync.py --datasets a,b --tools node_agent,rclone,rclone_sync,sdk_loop
	$(BIN)/python bench/bench_sync.py --datasets c --reps 1 --warmup 0

bench-render: deps
	$(BIN)/python bench/bench_render.py

bench-scale: deps
	$(BIN)/python bench/bench_scale.py
