"""The graph-level optimisation pipeline, as named steps in a fixed order.

    mcc.FoldConstantShapes   reshape/transpose of weights and biases, in numpy (fast)
    mcc.LegalizeDynamicSlice Slice with run-time starts/ends, lowered before FoldConstant
    FoldConstant             evaluate the remaining weight-only subgraphs
    mcc.FoldBatchNorm        fold BN into conv weights and bias (passes/fold_batch_norm.py)
    mcc.ConvertLayout        conv data layout (NHWC on CPU by default; passes/layout.py)
    mcc.Bf16                 --precision bf16: conv2d / constant-weight matmul as bf16
                             kernels (passes/bf16.py), before Winograd
    mcc.Winograd             CPU, NHWC: 3x3 stride-1 convs as Winograd F(4x4, 3x3): input
                             transform, batched matmul, output transform (passes/winograd.py)
    DecomposeOpsForInference remaining BN / layer-norm style ops into elementwise arithmetic
    CanonicalizeBindings     drop trivial rebindings so patterns see through them
    FoldConstant             fold what decomposition exposed
    FastMathTransform        exp / erf / tanh / softmax as vectorisable polynomials (the libm
                             calls LLVM emits are scalar: 10x slower on BERT's GELU and
                             softmax); error stays at float32 rounding (tested)
    LegalizeOps              lower Relax ops to TIR PrimFuncs
    AnnotateTIROpPattern     classify each PrimFunc (injective, reduction, out-elemwise-fusable…)
    FoldConstant             fold constant TIR calls
    FuseOps, FuseTIR         fuse elementwise epilogues/prologues into their producers
    mcc.OrderSymbolicBindings  (between them) a fused group that takes a symbolic var comes
                             after the match_cast defining it (FuseOps may put it before)
    DeadCodeElimination      remove functions nobody calls any more

The names listed here are what ``mcc info`` reports under "passes".
"""

from __future__ import annotations

import tvm
from tvm import relax

from mcc.errors import MccError, first_line
from mcc.passes import (
    ConvertLayout,
    FastMath,
    FoldBatchNorm,
    FoldConstantShapes,
    LegalizeDynamicSlice,
    OrderSymbolicBindings,
    Winograd,
)


def graph_passes(layout: str = "NCHW", strict_layout: bool = True, say=None,
                 winograd: bool = False, bf16: bool = False
                 ) -> list[tuple[str, tvm.transform.Pass]]:
    T = relax.transform
    steps = [
        ("mcc.FoldConstantShapes", FoldConstantShapes()),
        ("mcc.LegalizeDynamicSlice", LegalizeDynamicSlice()),  # before FoldConstant (see pass)
        ("FoldConstant", T.FoldConstant()),
        ("mcc.FoldBatchNorm", FoldBatchNorm()),
        (f"mcc.ConvertLayout({layout})", ConvertLayout(layout, strict=strict_layout, say=say)),
        ("DecomposeOpsForInference", T.DecomposeOpsForInference()),
        ("CanonicalizeBindings", T.CanonicalizeBindings()),
        ("FoldConstant", T.FoldConstant()),
        ("FastMathTransform", FastMath()),  # TVM's rewrites; passes/fast_math.py
        ("LegalizeOps", T.LegalizeOps()),
        ("AnnotateTIROpPattern", T.AnnotateTIROpPattern()),
        ("FoldConstant", T.FoldConstant()),
        ("FuseOps", T.FuseOps()),
        # FuseOps places groups by dataflow operands only: move a group that takes a
        # symbolic var back after the match_cast binding it (passes/order_symbolic_bindings)
        ("mcc.OrderSymbolicBindings", OrderSymbolicBindings()),
        ("FuseTIR", T.FuseTIR()),
        ("DeadCodeElimination", T.DeadCodeElimination()),
    ]
    if winograd:
        steps.insert(5, ("mcc.Winograd", Winograd()))  # after ConvertLayout: NHWC convs
    if bf16:  # --precision bf16, before Winograd: bf16 sites stay direct (passes/bf16.py)
        from mcc.passes.bf16 import Bf16

        steps.insert(5, ("mcc.Bf16", Bf16()))
    return steps


def optimize(mod: tvm.IRModule, target: tvm.target.Target,
             layout: str = "auto", say=None, auto_choice: str | None = None,
             winograd: bool = True, bf16: bool = False) -> tuple[tvm.IRModule, list[str]]:
    """Run the graph pipeline for ``target``; return the module and the pass names applied.

    ``winograd``: 3x3 stride-1 convs as Winograd on CPU targets (mcc.passes.winograd).

    ``say`` receives a progress line where ``--layout auto`` keeps the imported layout;
    ``auto_choice`` is the candidate of ``auto`` being tried (mcc.layout_choice)."""
    from mcc.passes.layout import resolve_layout

    # an explicit --layout must hold; auto keeps the imported layout where conversion fails
    concrete = auto_choice or resolve_layout(layout, target.kind.name)
    steps = graph_passes(concrete, strict_layout=layout != "auto", say=say,
                         winograd=winograd and target.kind.name == "llvm", bf16=bf16)
    with target:
        for name, graph_pass in steps:
            try:
                mod = graph_pass(mod)
            except Exception as err:  # an op or pattern TVM cannot lower: say which pass
                raise MccError(f"graph pass {name} failed on this model: "
                               f"{first_line(err)}") from None
    return mod, [name for name, _ in steps]
