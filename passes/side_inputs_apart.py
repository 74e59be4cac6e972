"""Small tensors computed at run time for a conv's or matmul's epilogue: a kernel of their own.

A dynamically quantized conv adds a bias quantized at run time: ``floor(b / scale)`` with
the checks of a float -> int32 cast (not finite, wrap around), one value per output
channel. FuseOps fuses that chain into the conv's kernel, where it can only be inlined
into the write-back and runs once per output element: a 1 -> 24 channel stride-2 conv
took 2.7 ms where its arithmetic needs ~20 us, and an activation that reads its input
several times (the vectorised sigmoid) copied the chain into each read. After this pass
the chain runs once, as its own small kernel, and the conv's epilogue reads its result
like a constant bias.

Which tensors: those computed by elementwise / injective kernels from constants and
one-element tensors only, larger than one element and at most 1/16 of the output of the
elementwise kernel they feed, when that kernel's other input comes (through elementwise
steps) from a conv or matmul. Their producing kernel is marked opaque (a copy of its
PrimFunc, so other callers keep fusing). Tensors computed from the model's data (a
squeeze-excitation scale, a layer norm's statistics) are left to FuseOps.
"""

from __future__ import annotations

import math

import tvm
import tvm_ffi
from tvm import relax

from mcc.passes.shapes import static_shape

OPAQUE = 8  # TVM's OpPatternKind kOpaque: FuseOps fuses nothing into or out of it
BROADCAST = 1  # kElemWise 0, kBroadcast 1
FUSABLE = 2  # and kInjective 2
OUT_EWISE_FUSABLE = 4  # conv2d, matmul
MAX_SHARE = 16  # the side tensor has at most 1/MAX_SHARE of the consumer's elements


def side_inputs_apart(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with the producers of its epilogue side tensors kept out of fusion."""
    return SideInputsApart()(mod)


@tvm.transform.module_pass(opt_level=0, name="mcc.SideInputsApart")
class SideInputsApart:
    """Module pass form; runs after AnnotateTIROpPattern, before FuseOps."""

    def transform_module(self, mod, ctx):
        builder = relax.BlockBuilder(mod)
        copies: dict[str, tvm.ir.GlobalVar] = {}
        for gv, func in list(mod.functions_items()):
            if isinstance(func, relax.Function):
                apart = _side_tensors(mod, func)
                if apart:
                    builder.update_func(gv, _mark(builder, mod, func, apart, copies))
        return builder.get()


class _Bindings:
    """What ``func`` binds each var to, with each call's op pattern and each var's element
    count looked up once: the walks below ask again for every reader of a var."""

    def __init__(self, mod, func):
        self.calls = {}
        for block in getattr(func.body, "blocks", []):
            for binding in block.bindings:
                if isinstance(binding, relax.VarBinding):
                    self.calls[binding.var] = binding.value
        self.patterns = {var: _pattern(mod, call) for var, call in self.calls.items()}
        self._sizes: dict = {}

    def size(self, expr) -> int | None:
        if expr not in self._sizes:
            shape = static_shape(expr)
            self._sizes[expr] = None if shape is None else math.prod(shape)
        return self._sizes[expr]


def _side_tensors(mod, func) -> set:
    """The vars bound to the side tensors in ``func`` (see the module docstring)."""
    graph = _Bindings(mod, func)
    apart = set()
    for var, call in graph.calls.items():
        pattern = graph.patterns[var]
        if pattern is None or pattern > BROADCAST:
            continue
        size = graph.size(var)
        tensors = [a for a in _args(call) if isinstance(a, relax.Var)]
        if size is None or not any(_from_reduction(graph, a) for a in tensors):
            continue
        for arg in tensors:
            arg_size = graph.size(arg)
            if (arg in graph.calls and arg_size is not None and 1 < arg_size
                    and arg_size * MAX_SHARE <= size and _from_constants(graph, arg)):
                apart.add(arg)
    return apart


def _from_constants(graph: _Bindings, expr, depth: int = 32) -> bool:
    """Whether ``expr`` is computed by elementwise / injective kernels from constants and
    one-element tensors only (a bias divided by a run-time scale), not from the model's
    data (a squeeze-excitation scale, a layer norm's statistics, an attention mask)."""
    if not isinstance(expr, relax.Var):
        return True  # a constant
    size = graph.size(expr)
    if size is not None and size <= 1:
        return True
    pattern = graph.patterns.get(expr)
    if pattern is None or pattern > FUSABLE or depth == 0:
        return False
    return all(_from_constants(graph, a, depth - 1) for a in _args(graph.calls[expr]))


def _from_reduction(graph: _Bindings, var, depth: int = 8) -> bool:
    """Whether ``var`` is a conv / matmul output, directly or through elementwise steps."""
    pattern = graph.patterns.get(var)
    if pattern == OUT_EWISE_FUSABLE:
        return True
    if pattern is None or pattern > FUSABLE or depth == 0:
        return False
    return any(_from_reduction(graph, a, depth - 1) for a in _args(graph.calls[var])
               if isinstance(a, relax.Var) and graph.size(a) == graph.size(var))


def _mark(builder, mod, func, apart: set, copies: dict):
    def rebind(binding):
        if binding.var not in apart:
            return binding
        call = binding.value
        callee = call.args[0]
        if callee.name_hint not in copies:
            copies[callee.name_hint] = builder.add_func(
                mod[callee].with_attr("op_pattern", OPAQUE), f"{callee.name_hint}_apart")
        args = [copies[callee.name_hint], *call.args[1:]]
        return relax.VarBinding(binding.var, relax.Call(call.op, args, call.attrs,
                                                        call.ty_args, ret_ty=call.ty))

    return tvm_ffi.structural_map(func, [(relax.VarBinding, rebind)])


def _pattern(mod, call) -> int | None:
    """The op pattern of the PrimFunc a ``call_tir`` calls, or None for other calls."""
    if not (isinstance(call, relax.Call) and isinstance(call.op, tvm.ir.Op)
            and call.op.name == "relax.call_tir"):
        return None
    func = mod[call.args[0]]
    if func.attrs is None or "op_pattern" not in func.attrs:
        return None
    return int(func.attrs["op_pattern"])


def _args(call) -> list:
    args = call.args[1]
    return list(args.fields) if isinstance(args, relax.Tuple) else [args]
