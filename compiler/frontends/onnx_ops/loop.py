"""ONNX Loop as a recursive Relax function: the trip count and condition are run-time values.

ONNX Loop's trip count ``M`` and its ``cond`` are tensors, often computed in the
graph (Range's expansion, beam searches), so the loop cannot be unrolled at
compile time. mcc emits one global Relax function per Loop node::

    loop(i, M, cond, carried..., scans..., captured...):
        if i < M and cond:
            cond', carried', y... = body(i, cond, carried...)
            return loop(i + 1, M, cond', carried', concat(scans, y)..., captured...)
        else:
            return (carried..., scans...)

The Relax VM runs the recursion and the ``If`` natively. Scan outputs grow by
concatenation, so their per-iteration shape must be known at compile time.
Values of the enclosing graph that the body reads are passed as extra
parameters (a global function cannot see the caller's variables).
"""

from __future__ import annotations

import functools

import numpy as np
import tvm
from tvm import relax, tirx
from tvm.relax.frontend.onnx.onnx_frontend import OnnxOpConverter

from mcc.frontends.onnx_ops import register
from mcc.frontends.onnx_ops.control_flow import convert_body
from mcc.passes.shapes import static_dims

op = relax.op

_INT64_MAX = np.iinfo(np.int64).max


def free_names(graph) -> set[str]:
    """Names a (sub)graph reads but does not define: values from the enclosing scope."""
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    used: set[str] = set()
    for node in graph.node:
        used.update(name for name in node.input if name)
        defined.update(node.output)
        for attr in node.attribute:
            for sub in list(attr.graphs) + ([attr.g] if attr.HasField("g") else []):
                used |= free_names(sub)
    return used - defined


def _scalar(bb, value, dtype: str):
    """An ONNX scalar operand (shape () or [1]) as a 0-d tensor of ``dtype``."""
    value = bb.normalize(value)
    if value.ty.ndim != 0:
        value = bb.normalize(op.reshape(value, []))
    if str(value.ty.dtype) != dtype:
        value = bb.normalize(op.astype(value, dtype))
    return value


def _symbolic(ty, tag: str):
    """The tensor type ``ty`` with every dimension a fresh symbolic variable."""
    dims = [tirx.Var(f"{tag}_d{k}", "int64") for k in range(ty.ndim)]
    return relax.TensorType(dims, ty.dtype)


def _same_type(a, b) -> bool:
    da, db = static_dims(a), static_dims(b)
    return da is not None and da == db and str(a.dtype) == str(b.dtype)


def _settle_carried(bb, outs: list, carried: list, symbolic: set[int]) -> list:
    """Give carried outputs whose shape TVM cannot infer (a dynamic Slice) the static
    type of their input, as a run-time checked ``match_cast``; scan outputs that are
    the same value follow."""
    outs = list(outs)
    cast = []  # (value, its match_cast)
    for k, var in enumerate(carried):
        y = outs[1 + k]
        if k in symbolic or not isinstance(y.ty, relax.TensorType):
            continue
        if static_dims(y.ty) is None and y.ty.ndim == var.ty.ndim and \
                str(y.ty.dtype) == str(var.ty.dtype):
            outs[1 + k] = bb.match_cast(y, var.ty)
            cast.append((y, outs[1 + k]))
    for j in range(1 + len(carried), len(outs)):
        outs[j] = next((c for y, c in cast if y.same_as(outs[j])), outs[j])
    return outs


class _Retype(Exception):
    """A loop-carried value changes shape between iterations: type it symbolically."""

    def __init__(self, indices):
        super().__init__(indices)
        self.indices = indices


@register("Loop")
class Loop(OnnxOpConverter):
    @classmethod
    def get_converter(cls, opset):
        return functools.partial(cls._convert, opset=opset)

    @classmethod
    def _convert(cls, bb, inputs, attr, params, opset):
        body = attr["body"]
        outer = params[0]
        initial = list(inputs[2:])
        for value_info in list(body.input[2:]) + list(body.output[1:]):
            if value_info.type.HasField("sequence_type") or \
                    value_info.type.HasField("optional_type"):
                raise ValueError(f"Loop value '{value_info.name}' is a sequence/optional: "
                                 "mcc's Loop carries tensors only")
        for value in initial:
            if not isinstance(value, relax.Expr) or not isinstance(
                    getattr(value, "ty", None), relax.TensorType):
                raise ValueError("Loop-carried sequences/optionals are not supported "
                                 "(only tensors)")
        trip = (_scalar(bb, inputs[0], "int64") if len(inputs) > 0 and inputs[0] is not None
                else relax.const(_INT64_MAX, "int64"))
        cond = (_scalar(bb, inputs[1], "bool") if len(inputs) > 1 and inputs[1] is not None
                else relax.const(True, "bool"))
        captured = [(name, outer[name]) for name in sorted(free_names(body))
                    if isinstance(outer.get(name), relax.Expr)
                    and not isinstance(outer[name], tvm.ir.GenericConst)]
        symbolic: set[int] = set()
        for _ in range(len(initial) + 1):
            try:
                gv, scan_shapes = cls._build(bb, body, initial, captured, outer, symbolic,
                                             opset)
                break
            except _Retype as retype:
                symbolic |= set(retype.indices)
        else:  # pragma: no cover - each retry adds an index, so this cannot loop on
            raise ValueError("Loop-carried value types do not settle")
        scans0 = [relax.const(np.zeros([0, *dims], dtype=dtype), dtype)
                  for dims, dtype in scan_shapes]
        args = [relax.const(0, "int64"), trip, cond, *initial, *scans0,
                *(value for _, value in captured)]
        result = bb.emit(relax.Call(gv, args))
        n_out = len(initial) + len(scan_shapes)
        items = [bb.emit(relax.TupleGetItem(result, k)) for k in range(n_out)]
        return items[0] if n_out == 1 else relax.Tuple(items)

    @classmethod
    def _build(cls, bb, body, initial, captured, outer, symbolic, opset):
        """Emit the recursive function; its GlobalVar and each scan output's (dims, dtype)."""
        names = [i.name for i in body.input]
        n_carried = len(initial)
        i_var = relax.Var("iter", relax.TensorType([], "int64"))
        m_var = relax.Var("trip_count", relax.TensorType([], "int64"))
        c_var = relax.Var("cond", relax.TensorType([], "bool"))
        carried = [relax.Var(f"carried{k}", _symbolic(v.ty, f"c{k}") if k in symbolic
                             else v.ty) for k, v in enumerate(initial)]
        captured_vars = [relax.Var(f"outer_{k}", bb.normalize(value).ty)
                         for k, (_, value) in enumerate(captured)]
        scope = dict(outer)
        scope.update({name: var for (name, _), var in zip(captured, captured_vars)})
        bindings = dict(zip(names, [i_var, c_var, *carried]))

        # Convert the body first (in the then-branch block) to learn the scan shapes.
        head = [i_var, m_var, c_var, *carried]
        bb.begin_scope(head + captured_vars)
        bb._begin_binding_block()
        try:
            bb._begin_binding_block()
            try:
                outs = convert_body(bb, body, bindings, scope, opset)
                outs = [bb.normalize(o) for o in outs]
            except BaseException:
                bb._end_block()
                raise
            outs = _settle_carried(bb, outs, carried, symbolic)
            mismatched = [k for k in range(n_carried) if k not in symbolic
                          and not _same_type(outs[1 + k].ty, carried[k].ty)]
            if mismatched:
                bb._end_block()
                raise _Retype(mismatched)
            scan_shapes = []
            for y in outs[1 + n_carried:]:
                dims = static_dims(y.ty) if isinstance(y.ty, relax.TensorType) else None
                if dims is None:
                    bb._end_block()
                    raise ValueError("Loop scan outputs need a static per-iteration shape")
                scan_shapes.append((dims, str(y.ty.dtype)))
            scans = [relax.Var(f"scan{k}", relax.TensorType(
                [tirx.Var(f"s{k}_n", "int64"), *dims], dtype))
                for k, (dims, dtype) in enumerate(scan_shapes)]
            params = head + scans + captured_vars
            ret = relax.TupleType(
                [relax.TensorType(ndim=v.ty.ndim, dtype=v.ty.dtype) if k in symbolic
                 else v.ty for k, v in enumerate(carried)]
                + [relax.TensorType(ndim=len(dims) + 1, dtype=dtype)
                   for dims, dtype in scan_shapes])
            stop = relax.Tuple([*carried, *scans])
            gv = bb.add_func(relax.Function(params, stop, ret, is_pure=True), "mcc_onnx_loop")

            next_cond = _scalar(bb, outs[0], "bool")
            grown = [bb.normalize(op.concat([s, op.expand_dims(y, [0])], axis=0))
                     for s, y in zip(scans, outs[1 + n_carried:])]
            step = bb.normalize(op.add(i_var, relax.const(1, "int64")))
            recurse = bb.emit(relax.Call(gv, [step, m_var, next_cond,
                                              *outs[1: 1 + n_carried], *grown,
                                              *captured_vars]))
            then_block = bb._end_block()
            keep = bb.emit(op.logical_and(op.less(i_var, m_var), c_var))
            branch = bb.emit(relax.If(keep, relax.SeqExpr([then_block], recurse),
                                      relax.SeqExpr([], stop)))
        finally:
            outer_block = bb._end_block()
            bb.end_scope()
        func = relax.Function(params, relax.SeqExpr([outer_block], branch), ret, is_pure=True)
        bb.update_func(gv, func)
        return gv, scan_shapes
