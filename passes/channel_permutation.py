"""A chain of reshapes and transposes that only reorders one axis, as one op on that axis.

    reshape -> transpose -> reshape  (ShuffleNet's channel shuffle, in NCHW)

moves each element along the channel axis only. Once the layout pass puts the convs in
NHWC it wraps such a chain in NHWC -> NCHW -> NHWC transposes, and the fused kernel
walked a 5-D NCHW view with a division and a modulo per axis per element: ShuffleNet's
shuffles took 15% of its time (3.7 ms for one 56x56x112 shuffle). Which chains qualify
is found by running the chain on an index array in numpy (so any mix of reshapes and
transposes is recognised, not one spelling); a qualifying chain from ``x`` to ``y``
(same shape) with ``y[..., c, ...] = x[..., perm[c], ...]`` becomes

    reshape(transpose(reshape(x, [.., g, k, ..]), swap g, k), x.shape)   when perm is the
                                                                        (g, k) transpose,
    take(x, perm, axis)                                                 otherwise,

a reorder within the axis that fuses with its producer (the concatenation and ReLU in
front of a shuffle) as one pass over the data.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from mcc.passes.rewrite import rewrite_functions

_CHAIN_OPS = ("relax.reshape", "relax.permute_dims")
MAX_ELEMENTS = 1 << 23  # the index array the check builds; larger chains are left alone
MAX_CHAIN = 8  # ops looked back through from each reshape / transpose


def channel_permutation(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with single-axis reorder chains of reshapes / transposes as one op."""
    return ChannelPermutation()(mod)


@tvm.transform.module_pass(opt_level=0, name="mcc.ChannelPermutation")
class ChannelPermutation:
    """Module pass form, for use inside a ``tvm.transform.Sequential``."""

    def transform_module(self, mod, ctx):
        mod = rewrite_functions(_Rewriter(mod), mod)
        for gv, func in mod.functions_items():  # the chains' old intermediate steps
            if isinstance(func, relax.Function):
                mod[gv] = relax.analysis.remove_all_unused(func)
        return mod


@mutator
class _Rewriter(PyExprMutator):
    def visit_call_(self, call):
        call = self.builder_.normalize(super().visit_call_(call))
        if not _is_chain_op(call):
            return call
        chain = self._chain(call)  # [(op call), ...] from the first op to ``call``
        out_shape = _static_shape(call)
        if out_shape is None:
            return call
        # the longest chain whose start has the output's shape and which only reorders
        for start in range(len(chain) - 1):  # two ops at least: one is already one op
            source = chain[start].args[0]
            if _static_shape(source) != out_shape:
                continue
            found = _single_axis_perm(chain[start:], out_shape)
            if found is not None:
                axis, perm = found
                return source if axis is None else _reorder(self.builder_, source, axis, perm)
        return call

    def _chain(self, call) -> list:
        """The reshape / transpose calls leading to ``call`` (each one's input the previous
        one's output), first first."""
        chain = [call]
        while True:
            producer = chain[0].args[0]
            while isinstance(producer, relax.Var):  # through aliases (a chain undone)
                bound = self.lookup_binding(producer)
                if bound is None:
                    break
                producer = bound
            if not _is_chain_op(producer) or len(chain) == MAX_CHAIN:
                return chain
            chain.insert(0, producer)


def _is_chain_op(expr) -> bool:
    return (isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op)
            and expr.op.name in _CHAIN_OPS)


def _static_shape(expr) -> tuple[int, ...] | None:
    shape = getattr(getattr(expr.ty, "shape", None), "values", None)
    if shape is None or not all(isinstance(d, tvm.tirx.IntImm) for d in shape):
        return None
    return tuple(int(d) for d in shape)


def _single_axis_perm(chain, shape) -> tuple[int | None, np.ndarray | None] | None:
    """(axis, perm) where the chain's output is its input reordered along ``axis`` only
    (``out[.., c, ..] = in[.., perm[c], ..]``), (None, None) where it is the identity, else
    None."""
    size = int(np.prod(shape))
    if size > MAX_ELEMENTS or size == 0:
        return None
    index = np.arange(size, dtype=np.int64).reshape(shape)
    for op in chain:
        if op.op.name == "relax.reshape":
            target = _static_shape(op)
            if target is None:
                return None
            index = index.reshape(target)
        else:
            axes = op.attrs.axes
            index = np.transpose(index, None if axes is None else [int(a) for a in axes])
    source = np.stack(np.unravel_index(index.reshape(shape), shape))  # [rank, *shape]
    identity = np.indices(shape)
    moved = [axis for axis in range(len(shape)) if not np.array_equal(source[axis],
                                                                      identity[axis])]
    if not moved:
        return None, None  # the identity: the chain undoes itself
    if len(moved) != 1:
        return None  # a reorder across axes (a real transpose)
    axis = moved[0]
    perm = np.moveaxis(source[axis], axis, -1).reshape(-1, shape[axis])
    if not (perm == perm[:1]).all():
        return None  # the reorder depends on the other coordinates
    return axis, perm[0]


def _reorder(builder, x, axis: int, perm: np.ndarray):
    """``x`` reordered along ``axis`` by ``perm``, as a (g, k) transpose where it is one."""
    if np.array_equal(perm, np.arange(len(perm))):
        return x
    shape = list(_static_shape(x))
    count = len(perm)
    for groups in range(2, count):
        if count % groups:
            continue
        per_group = count // groups
        c = np.arange(count)
        if np.array_equal(perm, (c % groups) * per_group + c // groups):
            split = shape[:axis] + [groups, per_group] + shape[axis + 1:]
            axes = list(range(len(split)))
            axes[axis], axes[axis + 1] = axes[axis + 1], axes[axis]
            grouped = builder.emit(relax.op.reshape(x, split))
            return relax.op.reshape(builder.emit(relax.op.permute_dims(grouped, axes)), shape)
    return relax.op.take(x, relax.const(perm.astype("int64")), axis=axis)
