# toloka-bridge: every target a newcomer or CI needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
KAFKA_PORT ?= 9092
export KAFKA_PORT
PYTEST_ARGS ?=

.PHONY: help
help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@

.PHONY: venv
venv: $(BIN)/.installed  ## create .venv with the package and the dev tools

.PHONY: tools
tools:  ## install the Debian tools the tests use (promtool, kcat) if missing
	dev/tools.sh

.PHONY: kafka-up
kafka-up:  ## start a local Apache Kafka broker (KRaft) on 127.0.0.1:$KAFKA_PORT
	dev/kafka/kafka.sh up

.PHONY: kafka-down
kafka-down:  ## stop the broker that kafka-up started
	dev/kafka/kafka.sh down

.PHONY: test
test: venv tools  ## the whole suite against a real broker (started and stopped here)
	dev/with-kafka.sh $(BIN)/pytest $(PYTEST_ARGS)

.PHONY: lint
lint: venv  ## ruff format check, ruff lint, mypy strict
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

.PHONY: schemas
schemas: venv  ## regenerate schemas/ from the code
	$(BIN)/python dev/write_schemas.py

.PHONY: demo
demo: venv  ## run the simulator, a broker and the bridge; watch events live
	dev/demo.sh

.PHONY: bench
bench: venv  ## benchmarks, short profile (a few minutes); writes bench/results/
	dev/with-kafka.sh $(BIN)/python -m bench --profile short

.PHONY: bench-long
bench-long: venv  ## benchmarks at release sizes (100k operations); writes bench/results/
	dev/with-kafka.sh $(BIN)/python -m bench --profile long

.PHONY: chaos
chaos: venv  ## the long reliability suite; rewrites the README's results tables
	dev/with-kafka.sh $(BIN)/python dev/chaos.py --scale long

.PHONY: clean
clean:  ## remove caches and run directories (not the venv or the Kafka jars)
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache .hypothesis

.PHONY: helm-lint
helm-lint: venv  ## helm lint --strict, helm template + kubeconform (default and all-on values)
	dev/helm.sh lint
