# Two commands for a fresh machine: `make demo` and `make test`.
# Both create ./.venv and install mcc into it (editable) with everything it needs, at the
# versions pinned in requirements.lock (every transitive dependency; `make lock` refreshes it).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mcc-installed
LOCK := requirements.lock
DEMO := build/demo

.PHONY: demo test lint lock clean

$(STAMP): pyproject.toml $(LOCK)
	# ARM cross toolchain, qemu and cmake for tests/arm and `mcc package` (as root, if missing).
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! (command -v aarch64-linux-gnu-g++ \
	    && command -v qemu-aarch64 && command -v cmake) >/dev/null; then \
	  apt-get update -qq && apt-get install -y -qq g++-aarch64-linux-gnu qemu-user cmake; fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c $(LOCK) pip setuptools
	# CPU build of torch (the project's optional PyTorch frontend), pinned.
	$(BIN)/python -m pip install --quiet -c $(LOCK) torch==2.13.0
	# --no-build-isolation: mcc is built with the locked setuptools, not the newest one.
	$(BIN)/python -m pip install --quiet --no-build-isolation -c $(LOCK) -e '.[torch,dev]'
	touch $(STAMP)

demo: $(STAMP)
	mkdir -p $(DEMO)
	$(BIN)/mcc targets
	$(BIN)/mcc compile examples/tiny_resnet.onnx --input-shape image=1,3,32,32 -o $(DEMO)/tiny_resnet.so
	$(BIN)/mcc info $(DEMO)/tiny_resnet.so
	$(BIN)/mcc run $(DEMO)/tiny_resnet.so --output $(DEMO)/outputs.npz
	$(BIN)/mcc bench $(DEMO)/tiny_resnet.so --repeat 30

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

# Resolve pyproject.toml anew in a throwaway venv and write every version it got to the lock.
lock:
	rm -rf build/lock-venv
	$(PYTHON) -m venv build/lock-venv
	build/lock-venv/bin/python -m pip install --quiet --upgrade pip setuptools
	build/lock-venv/bin/python -m pip install --quiet torch==2.13.0
	build/lock-venv/bin/python -m pip install --quiet -e '.[torch,dev]'
	{ sed -n '1,2p' $(LOCK); build/lock-venv/bin/python -m pip freeze --all --exclude-editable \
	  | sed -e 's/+cpu$$//'; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf build/lock-venv
	@echo "$(LOCK) refreshed: review 'git diff $(LOCK)', then run make test"

clean:
	rm -rf $(VENV) build .pytest_cache
