# The only verbs people and CI use. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TESTBIN := .ci/testbin.sh
RKTBUILD := .ci/rkt.sh
# Find or build real rkt (.ci/rkt.sh) and export RKT_DIR for the real-rkt tiers. Without a
# source tarball or RKT_PATH (exit 3), or when the build fails outside CI, the run goes on
# and those tiers skip with one line; in CI (CI=true) any failure here stops the run.
WITH_RKT = rkt_line=$$(bash $(RKTBUILD) | tail -n1; exit $${PIPESTATUS[0]}); rc=$$?; \
	  if [ $$rc = 0 ]; then export "$$rkt_line"; \
	  elif [ "$${CI:-}" = true ]; then echo "real rkt is required in CI (.ci/rkt.sh exit $$rc)" >&2; exit 1; \
	  else echo "real rkt unavailable (.ci/rkt.sh exit $$rc): the real-rkt tiers will skip" >&2; fi;
# Find or build krew (.ci/krew.sh) and export KREW_BIN for the krew install test
# (tests/chart/test_krew_install.py): required in CI, skipped with one line elsewhere.
WITH_KREW = krew_line=$$(bash .ci/krew.sh | tail -n1; exit $${PIPESTATUS[0]}); rc=$$?; \
	  if [ $$rc = 0 ]; then export "$$krew_line"; \
	  elif [ "$${CI:-}" = true ]; then echo "krew is required in CI (.ci/krew.sh exit $$rc)" >&2; exit 1; \
	  else echo "krew unavailable (.ci/krew.sh exit $$rc): the krew install test will skip" >&2; fi;
# Where `make cluster-up` keeps its control plane (outside the repo, like the binary cache).
CLUSTER_DIR ?= $(or $(XDG_RUNTIME_DIR),/tmp)/rkt-operator-cluster

.PHONY: help
help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python >= 3.11 is required"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@# rkt_sim and rkt_devkit are not part of the agent's distribution: put the source root on
	@# the virtualenv's path and give the simulator its `rkt-sim` launcher, as pip would.
	@$(PY) -c 'import sys, sysconfig; open(sysconfig.get_paths()["purelib"] + "/rkt-operator-dev.pth", "w").write(sys.argv[1] + "\n")' "$(CURDIR)/operator"
	@printf '#!%s\nimport sys\nfrom rkt_sim.main import main\nsys.exit(main())\n' "$(abspath $(PY))" > $(VENV)/bin/rkt-sim
	@chmod +x $(VENV)/bin/rkt-sim
	@touch $@

.PHONY: system-deps
system-deps: ## Check (and as root on Debian, install) openssl, util-linux, busybox-static
	@bash .ci/system-deps.sh

.PHONY: install-dev
install-dev: $(STAMP) ## Create .venv with the package and the development tools

.PHONY: testenv
testenv: system-deps ## Build (once, cached outside the repo) or find etcd, kube-apiserver, kubectl, helm
	@bash $(TESTBIN)

.PHONY: rkt
rkt: ## Build (once, cached outside the repo) or find real rkt v1.30.0; prints RKT_DIR=<dir>
	@bash $(RKTBUILD)

# As root (and unless NODE=0), `make test` also builds or finds what the real-node tier needs
# (.ci/node.sh: kubelet & co., containerd, the agent image, rkt). In CI a failure there fails
# the run; elsewhere the tier then skips, saying why.
NODE ?= 1
NODE_ENV = if [ "$$(id -u)" = 0 ] && [ "$(NODE)" != 0 ]; then \
	  if node=$$(bash .ci/node.sh); then export $$node; \
	  elif [ "$${CI:-}" = true ]; then echo "[make] .ci/node.sh failed (required in CI)" >&2; exit 1; \
	  else echo "[make] .ci/node.sh failed: the real-node tier will skip" >&2; fi; fi

.PHONY: test
test: system-deps $(STAMP) ## Run the whole test suite, real rkt tiers included (builds what it needs first)
	@assets=$$(bash $(TESTBIN) | tail -n1) && export "$$assets" && \
	  $(WITH_RKT) \
	  $(WITH_KREW) \
	  $(NODE_ENV) && \
	  $(PY) -m pytest $(PYTEST_ARGS)

.PHONY: nodeenv
nodeenv: system-deps ## Build (once, cached outside the repo) what the real-node tier needs (root)
	@bash .ci/node.sh

.PHONY: test-rkt
test-rkt: system-deps $(STAMP) ## Only the real-rkt tiers, required (fail instead of skip)
	@assets=$$(bash $(TESTBIN) | tail -n1) && export "$$assets" && \
	  $(WITH_RKT) \
	  $(PY) -m pytest --with-rkt -m rkt $(PYTEST_ARGS)

.PHONY: lint
lint: $(STAMP) ## ruff (lint + format check) and the import-layer contracts
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

.PHONY: fmt
fmt: $(STAMP) ## Format and auto-fix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

.PHONY: typecheck
typecheck: $(STAMP) ## mypy --strict on the package
	$(VENV)/bin/mypy

.PHONY: check
check: lint typecheck test ## Everything CI runs

.PHONY: crds
crds: $(STAMP) ## Regenerate the CRD from the pydantic models (and its copies in the chart and manifests/)
	$(PY) -m rkt_operator.model.crd > crds/rkttasks.rktoperator.io.yaml
	cp crds/rkttasks.rktoperator.io.yaml helm/rkt-operator/crds/rkttasks.rktoperator.io.yaml
	cp crds/rkttasks.rktoperator.io.yaml manifests/01-crd-rkttasks.rktoperator.io.yaml

.PHONY: manifests
manifests: $(STAMP) ## Regenerate manifests/ from the Helm chart
	@assets=$$(bash $(TESTBIN) | tail -n1) && export "$$assets" && \
	  $(PY) -m rkt_devkit.render_manifests --helm "$$KUBEBUILDER_ASSETS/helm"

# KREW_URL: where the release publishes the archive ({version} and {archive} are filled in);
# the default is the project's release v<version> (README, "Publishing kubectl rkt").
.PHONY: krew
krew: $(STAMP) ## Build the krew archive of kubectl rkt (dist/) and its manifest krew/rkt.yaml
	$(PY) -m rkt_devkit.krew $(if $(KREW_URL),--url-template '$(KREW_URL)')

.PHONY: demo
demo: system-deps $(STAMP) ## Local demo: control plane + 2 simulated nodes + examples/ (KEEP=1 leaves it running, RKT=real)
	@assets=$$(bash $(TESTBIN) | tail -n1) && export "$$assets" && \
	  $(if $(REAL_RKT),$(RKT_FIND)) \
	  $(PY) -m rkt_devkit.demo --assets "$$KUBEBUILDER_ASSETS" $(if $(KEEP),--keep) $(if $(REAL_RKT),--rkt "$$rktdir/rkt")

.PHONY: cluster-up
cluster-up: system-deps $(STAMP) ## Start a control plane and leave it running; prints the kubeconfig path
	@assets=$$(bash $(TESTBIN) | tail -n1) && export "$$assets" && \
	  $(PY) -m rkt_devkit.cluster up --assets "$$KUBEBUILDER_ASSETS" --dir $(CLUSTER_DIR)

.PHONY: cluster-down
cluster-down: $(STAMP) ## Stop the control plane started by cluster-up
	$(PY) -m rkt_devkit.cluster down --dir $(CLUSTER_DIR)

# RKT=real: the demo and the benchmark on real rkt (built or found by .ci/rkt.sh), not rkt-sim.
REAL_RKT = $(filter real,$(RKT))
RKT_FIND = rktdir=$$(bash .ci/rkt.sh | tail -n1) && rktdir=$${rktdir\#RKT_DIR=} &&

.PHONY: bench
bench: system-deps $(STAMP) ## Benchmark: N tasks (N=200) apply-to-Running vs same-rkt-work and kopf floors (RKT=real, SCALE=1)
	@assets=$$(bash $(TESTBIN) | tail -n1) && export "$$assets" && $(if $(REAL_RKT),$(RKT_FIND)) \
	  $(PY) bench/bench_agent.py $(if $(N),--tasks $(N)) $(if $(REAL_RKT),--rkt "$$rktdir/rkt") $(if $(SCALE),--scale)

.PHONY: chaos
chaos: system-deps $(STAMP) ## Chaos: N tasks (N=100) under agent SIGKILLs, an apiserver restart, rkt faults and killed apps (SEED=)
	@assets=$$(bash $(TESTBIN) | tail -n1) && export "$$assets" && \
	  $(PY) -m pytest tests/agent/test_chaos.py -s --timeout=3600 --chaos-tasks=$(or $(N),100) \
	    $(if $(SEED),--chaos-seed=$(SEED)) --chaos-report=chaos-report.json

.PHONY: clean
clean: ## Remove the virtualenv and caches (not the control-plane binary cache)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
