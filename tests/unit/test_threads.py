"""mcc sizes TVM's thread pool to the usable physical cores (TVM alone halves it on x86)."""

import os
import subprocess
import sys

from mcc.runtime.threads import usable_cores


def _num_threads(env):
    code = "import mcc, tvm; print(tvm.get_global_func('runtime.NumThreads')())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    return int(out.stdout.strip().splitlines()[-1])


def test_importing_mcc_uses_every_usable_core():
    env = {k: v for k, v in os.environ.items() if k != "TVM_NUM_THREADS"}
    assert _num_threads(env) == usable_cores() >= 1


def test_user_choice_wins():
    env = {**os.environ, "TVM_NUM_THREADS": "1"}
    assert _num_threads(env) == 1
