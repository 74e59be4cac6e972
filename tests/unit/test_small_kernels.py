"""Kernels too small to split lose their parallel loops; large and symbolic ones keep them."""

import numpy as np
import pytest
import tvm
from tvm import te, tirx

from mcc.schedule.small_kernels import SERIAL_WORK, kernel_work, loops, serialize_small_kernels


def _parallel_add(n):
    """``B = A + 1`` over ``n`` floats (a te.var for a symbolic size), outer loop parallel."""
    a = te.placeholder((n,), name="A")
    b = te.compute((n,), lambda i: a[i] + 1.0, name="B")
    func = te.create_prim_func([a, b]).with_attr("global_symbol", "main")
    sch = tvm.s_tir.Schedule(func)
    (i,) = sch.get_loops(sch.get_sblock("B"))
    outer, _ = sch.split(i, factors=[None, 16])
    sch.parallel(outer)
    return sch.mod


def _kinds(mod):
    return [loop.kind for loop in loops(mod["main"].body)]


def test_work_counts_innermost_iterations():
    assert kernel_work(_parallel_add(4096)["main"].body) == 4096


@pytest.mark.parametrize("n, serial", [(1024, True), (SERIAL_WORK * 4, False)])
def test_only_small_kernels_become_serial(n, serial):
    mod, changed = serialize_small_kernels(_parallel_add(n))
    assert len(changed) == int(serial)
    assert (tirx.ForKind.PARALLEL in _kinds(mod)) == (not serial)


def test_symbolic_extent_keeps_parallel_loop():
    mod, changed = serialize_small_kernels(_parallel_add(te.var("n", "int64")))
    assert not changed and tirx.ForKind.PARALLEL in _kinds(mod)


def test_serial_kernel_computes_the_same():
    mod, _ = serialize_small_kernels(_parallel_add(1024))
    lib = tvm.compile(mod, target="llvm")
    a = np.arange(1024, dtype="float32")
    b = tvm.runtime.tensor(np.zeros(1024, dtype="float32"))
    lib["main"](tvm.runtime.tensor(a), b)
    np.testing.assert_array_equal(b.numpy(), a + 1)
