# theprotocol.operator -- every target does its own set-up (lab/bootstrap.sh) on a fresh machine.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
COLLECTION_LINK := .build/collections/ansible_collections/theprotocol/operator
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.build/collections
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# Lab size: empty keeps the running lab's size (1 for a new lab); set it to grow or shrink.
LAB_HOSTS ?=
export LAB_HOSTS

.PHONY: ee ee-verify galaxy-import help lab lab-up lab-down lab-status deploy verify images bootstrap collection test unit lint sanity integration molecule

help:
	@echo "make lab         bring the offline lab up, deploy the operator stack on its hosts, print the checklist"
	@echo "make test        unit tests, ansible-lint, ansible-test sanity, lab integration tests with Molecule, EE"
	@echo "make lab-down    remove the lab (caches are kept)"
	@echo "other targets:   bootstrap images lab-up deploy verify lab-status unit lint sanity integration molecule"
	@echo "make ee          build the execution-environment image (ansible-builder, nothing pulled)"
	@echo "make ee-verify   make ee, then verify.yml inside it against lab host8; and failing on a real fault"

bootstrap:
	@bash lab/bootstrap.sh

collection:
	@mkdir -p $(dir $(COLLECTION_LINK)) && ln -sfn $(CURDIR) $(COLLECTION_LINK)

images: bootstrap
	@$(PY) lab/labctl.py build

lab-up: bootstrap collection
	@$(PY) lab/labctl.py up --hosts "$(LAB_HOSTS)"

deploy: collection
	@$(VENV)/bin/ansible-playbook -i lab/state/inventory.yml playbooks/site.yml

verify: collection
	@$(VENV)/bin/ansible-playbook -i lab/state/inventory.yml playbooks/verify.yml

# Bring the lab up, deploy the stack on every lab host, print the security checklist.
lab: lab-up
	@$(MAKE) -s deploy
	@$(MAKE) -s verify

lab-down: bootstrap
	@$(PY) lab/labctl.py down

lab-status: bootstrap
	@$(PY) lab/labctl.py status

# pytest on everything (collection, lab, registry app) and go test; then the standard entry point
# `ansible-test units` on a clean copy of the collection.
unit: bootstrap collection
	@bash tests/run_unit.sh
	@ANSIBLE_TEST_COMMAND=units bash tests/sanity/run.sh

# galaxy-importer on the built tarball (what Galaxy runs on an upload); not part of make test.
galaxy-import: bootstrap
	@bash tests/galaxy/importer.sh

# Execution environment (tests/ee/): the ansible-builder image on the lab's base image, and
# theprotocol.operator.verify run inside it with ansible-runner (docker) against the SSH host host8
# (make lab-up LAB_HOSTS=8 and a deployed host8 first). In make test after integration, whose
# test_ssh_host deployed host8: about 35 s warm, 2.5 min cold (benchmarks/ee.md).
ee: bootstrap
	@bash tests/ee/build.sh

ee-verify: ee
	@bash tests/ee/verify.sh
	@bash tests/ee/fault.sh

lint: bootstrap collection
	@$(VENV)/bin/ansible-lint --profile production

sanity: bootstrap
	@bash tests/sanity/run.sh

# Each integration test module works on its own lab host (host1-host11, named at the top of the
# module) or on none; modules run in parallel, the tests of one module in order. The Molecule
# scenarios run in the same schedule (tests/integration/test_molecule_*.py), on hosts of their own.
INTEGRATION_WORKERS ?= 5
INTEGRATION_HOSTS := 11
export INTEGRATION_HOSTS
integration: LAB_HOSTS := $(INTEGRATION_HOSTS)
integration: lab-up
	@THEPROTOCOL_IT_STOP_FINISHED_HOSTS=1 $(VENV)/bin/pytest -p no:cacheprovider tests/integration -v -rA -n $(INTEGRATION_WORKERS) --dist loadfile --no-loadscope-reorder --junitxml=.build/integration-junit.xml

# One Molecule scenario per role, on lab host containers attached to the running lab, one after the
# other (make integration runs them too, in parallel with the other modules).
MOLECULE_SCENARIOS ?= $(notdir $(wildcard molecule/*))
molecule: lab-up
	@set -e; for s in $(MOLECULE_SCENARIOS); do \
	  echo "molecule: scenario $$s"; \
	  PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/molecule test -s $$s; \
	done

# unit, lint and sanity run while the lab images, the lab hosts and the EE image are prepared in the
# background (tests/run_all.sh); then integration and ee-verify.
test: bootstrap collection
	@bash tests/run_all.sh
	@echo "make test: unit, lint, sanity, integration (with the Molecule scenarios) and ee-verify passed"
	@echo "suites: 5 passed, 0 failed"
