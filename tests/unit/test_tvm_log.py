"""mcc.runtime.tvm_log: TVM's per-constant 'Scope Loaded/Saving' lines are dropped, others kept."""

import os

from mcc.runtime.tvm_log import quiet_tvm


def test_noise_lines_on_fd2_are_dropped_and_the_rest_passed_on(capfd):
    with quiet_tvm():
        os.write(2, b"[07:03:10] executable.cc:340: Warning: Scope Loaded:\n")
        os.write(2, b"a real warning\n")
        os.write(2, b"[07:03:10] executable.cc:276: Warning: Scope Saving:\n")
    err = capfd.readouterr().err
    assert err == "a real warning\n"

