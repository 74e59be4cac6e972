# Two commands for a fresh machine: `make demo` and `make test`.
# Both create ./.venv and install mcc into it (editable) with everything it needs.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mcc-installed
DEMO := build/demo

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	# ARM cross toolchain, qemu and cmake for tests/arm and `mcc package` (as root, if missing).
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! (command -v aarch64-linux-gnu-g++ \
	    && command -v qemu-aarch64 && command -v cmake) >/dev/null; then \
	  apt-get update -qq && apt-get install -y -qq g++-aarch64-linux-gnu qemu-user cmake; fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# CPU build of torch (the project's optional PyTorch frontend), pinned.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[torch,dev]'
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

clean:
	rm -rf $(VENV) build .pytest_cache
