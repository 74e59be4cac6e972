"""Which activations a bf16 kernel can hand to the next bf16 kernel as bf16 (``mcc.Bf16``).

Every bf16 kernel rounds its fp32 input to bf16 in its pad step. Where a bf16 kernel's
result (after an elementwise tail: bias, ReLU, clip, residual add) feeds one other bf16
kernel and nothing else, that rounding can move into the producer: its fused epilogue
stores bf16 (half the bytes of fp32) and the consumer reads bf16 with no cast pass. The
consumer sees the same bf16 values either way, so the outputs are bit-identical.

A *handoff* is a dataflow var that

  * is used as the data operand of bf16 sites, and otherwise only by elementwise ops
    (a residual add), which read it widened back to fp32 (``widen``; those reads do see
    bf16-rounded values, as OpenVINO's bf16 mode does), and
  * is computed by a bf16 site, or by elementwise ops of the same shape (and reshapes)
    from one (a chain of at most ``MAX_CHAIN`` ops), so the cast lands in the kernel
    FuseOps makes of that chain.

The site predicate is passed in (``is_site``): the analysis knows no op's conditions.
"""

from __future__ import annotations

from collections import Counter

from tvm import relax

from mcc.passes.shapes import static_shape

MAX_CHAIN = 8
ELEMENTWISE = frozenset({
    "relax.add", "relax.subtract", "relax.multiply", "relax.divide", "relax.minimum",
    "relax.maximum", "relax.clip", "relax.nn.relu", "relax.nn.leakyrelu", "relax.nn.gelu",
    "relax.nn.gelu_tanh", "relax.nn.silu", "relax.sigmoid", "relax.tanh",
})


def _use_counts(func: relax.Function) -> Counter:
    """Bindings (and the function's result) that use each var."""
    counts = Counter()
    for block in func.body.blocks:
        for binding in block.bindings:
            counts.update(relax.analysis.free_vars(binding.value))
    counts.update(relax.analysis.free_vars(func.body.body))
    return counts


def _from_site(var, var2val, is_site, depth: int = 0) -> bool:
    """Whether ``var`` is a site's result or an elementwise chain from one."""
    value = var2val.get(var)
    if not isinstance(value, relax.Call) or depth > MAX_CHAIN:
        return False
    if is_site(value):
        return True
    op = getattr(value.op, "name", None)
    if op == "relax.reshape":  # a view (the ONNX importer's flattening around a Gemm)
        return isinstance(value.args[0], relax.Var) and _from_site(value.args[0], var2val,
                                                                    is_site, depth + 1)
    if op not in ELEMENTWISE:
        return False
    return any(isinstance(arg, relax.Var) and static_shape(arg) == static_shape(value)
               and _from_site(arg, var2val, is_site, depth + 1) for arg in value.args)


def bf16_handoffs(func: relax.Function, is_site, widen: bool = True) -> set:
    """The vars of ``func`` a bf16 site's producer can store as bf16 (see the module doc).
    ``widen``: also those that elementwise ops read besides sites (they read them widened
    back to fp32, so rounded to bf16: a residual stream)."""
    if not isinstance(func.body, relax.SeqExpr):
        return set()
    counts = _use_counts(func)
    var2val = relax.analysis.get_var2val(func)
    site_uses, elementwise_uses = Counter(), Counter()
    for block in func.body.blocks:
        for binding in block.bindings:
            value = binding.value
            if not isinstance(value, relax.Call):
                continue
            if is_site(value):
                site_uses.update([value.args[0]])
                if any(arg.same_as(value.args[0]) for arg in value.args[1:]):
                    site_uses.update([value.args[0]])  # also a weight: never a handoff
            elif widen and getattr(value.op, "name", None) in ELEMENTWISE:
                elementwise_uses.update({arg for arg in value.args if isinstance(arg, relax.Var)})
    return {var for var, uses in site_uses.items()
            if isinstance(var, relax.DataflowVar) and (uses == 1 or widen)
            and counts[var] == uses + elementwise_uses[var]
            and _from_site(var, var2val, is_site)}
