"""mcc.OrderSymbolicBindings: a binding that uses a symbolic var placed before the
match_cast defining it (FuseOps did that to all-MiniLM-L6-v2's mask index grids, and the
build failed: "range_len_0 ... has not been computed") moves back after it."""

from __future__ import annotations

from tvm import relax, tirx

from mcc.passes import order_symbolic_bindings


def _misordered():
    """main(x: int64[1]): n := x[0] (tensor_to_shape + match_cast), arange(n) + 1, with
    the arange moved before the match_cast the way FuseOps placed its group."""
    x = relax.Var("x", relax.TensorType([1], "int64"))
    n = tirx.Var("n", "int64")
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            shape = bb.emit(relax.op.tensor_to_shape(x))
            bb.match_cast(shape, relax.ShapeType([n]))
            positions = bb.emit(relax.op.arange(0, n, 1, "int64"))
            out = bb.emit_output(relax.op.add(positions, relax.const(1, "int64")))
        bb.emit_func_output(out)
    mod = bb.get()
    func = mod["main"]
    block = func.body.blocks[0]
    b = list(block.bindings)
    bad = relax.DataflowBlock([b[0], b[2], b[1], b[3]])  # arange before its match_cast
    mod["main"] = relax.Function(func.params, relax.SeqExpr([bad], func.body.body),
                                 func.ret_ty, func.is_pure, func.attrs)
    return relax.transform.Normalize()(mod)


def _well_formed(mod) -> bool:
    try:
        return relax.analysis.well_formed(mod) is not False  # None or True: well formed
    except Exception:  # e.g. "Var n is not defined."
        return False


def test_binding_moves_after_the_match_cast_defining_its_var():
    mod = _misordered()
    assert not _well_formed(mod)
    fixed = order_symbolic_bindings(mod)
    assert _well_formed(fixed)
    kinds = [type(b).__name__ for b in fixed["main"].body.blocks[0].bindings]
    assert kinds == ["VarBinding", "MatchCast", "VarBinding", "VarBinding"]


def test_well_ordered_module_is_unchanged():
    mod = order_symbolic_bindings(_misordered())
    again = order_symbolic_bindings(mod)
    assert again.same_as(mod)  # nothing to move: the very same module back
