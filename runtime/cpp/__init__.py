"""Sources of the mcc C++ runtime (``libmcc_runtime.a``, ``mcc_run``), shipped as package
data so ``mcc package`` can build the runner for a bundle's architecture."""

from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent
