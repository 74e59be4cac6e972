"""Bindings that use a symbolic var after the ``match_cast`` that defines it.

A length computed at run time (TVM's Range converter for a Range it cannot size, a
data-dependent shape) is bound to a fresh var by ``lv = R.match_cast(shape, R.Shape([n]))``;
later ops use ``n`` only through their shapes, with no dataflow edge to ``lv``. Relax's
FuseOps places a fused group by its dataflow operands alone, so a group whose kernels
take ``n`` (as ``R.shape([n])``) can land before that ``match_cast``, and the VM build
then fails: "PrimExpr n ... has not been computed" (all-MiniLM-L6-v2's attention-mask
index grids, ``Range(0, batch)`` / ``Range(0, seq)``, before mcc's Range converter).

:func:`order_symbolic_bindings` moves such bindings (and whatever depends on them) down
to just after the definitions they need, keeping the original order otherwise. A block
that cannot be ordered (a cycle) is left as it is.
"""

from __future__ import annotations

import tvm
from tvm import relax, tirx


def order_symbolic_bindings(mod: tvm.IRModule) -> tvm.IRModule:
    updates = {}
    for gv, func in mod.functions.items():
        if isinstance(func, relax.Function) and isinstance(func.body, relax.SeqExpr):
            body = _order_seq(func)
            if body is not None:
                updates[gv] = relax.Function(func.params, body, func.ret_ty, func.is_pure,
                                             func.attrs, func.span)
    if not updates:
        return mod
    mod = mod.clone()  # the caller's module stays as it was
    for gv, func in updates.items():
        mod[gv] = func
    return relax.transform.Normalize()(mod)  # the rebuilt SeqExpr / Function carry types


@tvm.transform.module_pass(opt_level=0, name="mcc.OrderSymbolicBindings")
class OrderSymbolicBindings:
    """Module pass form of :func:`order_symbolic_bindings`."""

    def transform_module(self, mod: tvm.IRModule, ctx) -> tvm.IRModule:
        return order_symbolic_bindings(mod)


def _tir_vars(expr) -> set:
    """The symbolic (TIR) vars an expression mentions: in shapes, prim values, types."""
    found = set()

    def visit(node):
        ty = getattr(node, "ty", None)
        if ty is not None:
            try:
                found.update(relax.analysis.tir_vars_in_type(ty))
            except Exception:  # noqa: S110  a type without TIR vars
                pass
        values = getattr(node, "values", None) if isinstance(node, relax.ShapeExpr) else None
        for value in values or ():
            found.update(tirx.analysis.undefined_vars(value))
        value = getattr(node, "value", None)
        if value is not None and tvm.ir.is_prim_expr(value):
            found.update(tirx.analysis.undefined_vars(value))

    relax.analysis.post_order_visit(expr, visit)
    return found


def _order_seq(func) -> relax.SeqExpr | None:
    known = set()  # symbolic vars defined by the parameters or an earlier block
    for param in func.params:
        known.update(relax.analysis.tir_vars_in_type(param.ty))
    blocks, changed = [], False
    for block in func.body.blocks:
        ordered = _order_block(block, known)
        if ordered is not None:
            changed = True
            block = (relax.DataflowBlock(ordered, block.span)
                     if isinstance(block, relax.DataflowBlock)
                     else relax.BindingBlock(ordered, block.span))
        blocks.append(block)
        for binding in block.bindings:
            if isinstance(binding, relax.MatchCast):
                known.update(relax.analysis.tir_vars_in_type(binding.ty))
    return relax.SeqExpr(blocks, func.body.body, func.body.span) if changed else None


def _order_block(block, known: set):
    bindings = list(block.bindings)
    definer = {}  # symbolic var -> index of the match_cast that first binds it
    for i, b in enumerate(bindings):
        if isinstance(b, relax.MatchCast):
            for var in relax.analysis.tir_vars_in_type(b.ty):
                if var not in known and var not in definer:
                    definer[var] = i
    if not definer:
        return None
    var_index = {b.var: i for i, b in enumerate(bindings)}
    deps = []
    late = False
    for i, b in enumerate(bindings):
        need = {var_index[v] for v in relax.analysis.free_vars(b.value) if v in var_index}
        tir_used = _tir_vars(b.value)
        if isinstance(b, relax.VarBinding):
            tir_used |= set(relax.analysis.tir_vars_in_type(b.var.ty))
        for var in tir_used:
            j = definer.get(var)
            if j is not None and j != i:
                need.add(j)
                late = late or j > i
        deps.append(need)
    if not late:
        return None
    done, order = set(), []
    pending = list(range(len(bindings)))
    while pending:
        for k, i in enumerate(pending):
            if deps[i] <= done:
                order.append(i)
                done.add(i)
                del pending[k]
                break
        else:
            return None  # a cycle: leave the block as it is
    return [bindings[i] for i in order]
