"""The graph-level optimisation pipeline, as named steps in a fixed order.

    mcc.DataflowBlocks       runs of pure bindings outside a dataflow block (a model with
                             an If imports with none) into dataflow blocks, so FuseOps and
                             the dataflow rewrites see them (passes/dataflow_blocks.py)
    mcc.FoldConstantShapes   reshape/transpose of weights and biases, in numpy (fast)
    mcc.LegalizeDynamicSlice Slice with run-time starts/ends, lowered before FoldConstant
    FoldConstant             evaluate the remaining weight-only subgraphs
    mcc.FoldBatchNorm        fold BN into conv weights and bias (passes/fold_batch_norm.py)
    mcc.Conv1dAsConv2d       conv1d as a height-1 conv2d, so it takes the conv layouts and
                             schedules (passes/conv1d_as_conv2d.py)
    mcc.ConvTransposeAsMatmul  CPU: a kernel = stride ConvTranspose (2x2/2 upsampling) as one
                             matmul and a rearrangement (passes/conv_transpose_as_matmul.py)
    mcc.SplitGroupedConv     CPU: a grouped (not depthwise) conv2d as one conv2d per group,
                             which the layouts and conv schedule take (split_grouped_conv.py)
    mcc.ConvertLayout        conv data layout (NHWC on CPU by default; passes/layout.py)
    mcc.ChannelPermutation   a reshape / transpose chain that only reorders one axis (a
                             channel shuffle, with the layout's transposes around it) as
                             one reorder on that axis (passes/channel_permutation.py)
    mcc.Bf16                 --precision bf16: conv2d / constant-weight matmul as bf16
                             kernels (passes/bf16.py), before Winograd
    mcc.Winograd             CPU, NHWC: 3x3 stride-1 convs as Winograd F(4x4, 3x3): input
                             transform, batched matmul, output transform (passes/winograd.py)
    mcc.PadChannels          CPU: NHWC conv2d output channels padded to whole vectors (257 STFT
                             bins, 1000 classes), sliced after (passes/pad_channels.py)
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

The names listed here are what ``mcc info`` reports under "passes". The layouts a user
may ask for (``--layout``) and what each means for a target kind (:func:`resolve_layout`)
are defined here; mcc.passes.layout converts to one.
"""

from __future__ import annotations

import tvm
from tvm import relax

from mcc.errors import MccError, first_line
from mcc.passes import (
    ChannelPermutation,
    Conv1dAsConv2d,
    ConvertLayout,
    ConvTransposeAsMatmul,
    DataflowBlocks,
    FastMath,
    FoldBatchNorm,
    FoldConstantShapes,
    LegalizeDynamicSlice,
    OrderSymbolicBindings,
    PadChannels,
    SideInputsApart,
    SplitGroupedConv,
    Winograd,
)
from mcc.targets.kinds import kind_of

LAYOUTS = ("NCHW", "NHWC", "NCHWc", "auto")

# What ``--layout auto`` picks per target kind, from benchmarks/layout.py (docs/BENCHMARKS.md,
# "Layouts"). CPU ms per inference, one thread, x86 AVX-512 (Zen 5), two runs on a busy
# shared machine:
#
#   model         NCHW     NHWC        NCHWc       auto (= NHWC)
#   ResNet-18     1471*    34.9 / 35.4  35.2 / 35.7  34.6 / 35.8
#   ResNet-50     8302*    80.3 / 84.1  78.2 / 81.6  79.9 / 85.1
#   MobileNetV2   390*     10.0 / 9.8    9.3 / 9.4    9.7 / 9.8      (* wall ms, 2 threads)
#
# NCHW is 24-41x slower (its conv rule finds no vectorisable axis). NHWC and NCHWc are
# within 1-7% of each other (NCHWc ahead on ResNet-50 and MobileNetV2, behind on
# ResNet-18), and tuning records change the answer per kernel, so on a CPU that runs the
# module (x86 here) ``auto`` builds both and keeps the faster (mcc.driver.layout_choice); the
# first candidate is the choice where nothing is measured (cross targets, small models).
# ARM (NEON) and CUDA: NHWC, what mcc's rules and dlight are written for; not measured
# against NCHWc (no ARM or GPU hardware here), and NCHWc is refused for CUDA.
# The candidates per kind are ``TargetKind.auto_layouts`` (mcc.targets.kinds).


def resolve_layout(layout: str, target_kind) -> str:
    """The concrete layout ``layout`` means for a target kind (``auto`` looked up);
    ``target_kind``: a kind name, a TVM target or a TargetKind (mcc.targets.kinds)."""
    if layout not in LAYOUTS:
        raise MccError(f"unknown layout '{layout}'; valid layouts: {', '.join(LAYOUTS)}")
    if layout == "auto":
        return auto_candidates(target_kind)[0]
    kind_of(target_kind).check_layout(layout)
    return layout


def auto_candidates(target_kind) -> tuple[str, ...]:
    """The layouts ``--layout auto`` may pick for a target kind, default first."""
    return kind_of(target_kind).auto_layouts


def graph_passes(layout: str = "NCHW", strict_layout: bool = True, say=None,
                 winograd: bool = False, lanes: int | None = None, bf16: bool = False,
                 conv_rewrites: bool = False) -> list[tuple[str, tvm.transform.Pass]]:
    """The graph passes in order, each with the name the metadata records.

    ``lanes``: the target's fp32 SIMD lanes, which the NCHWc layout blocks channels by."""
    T = relax.transform
    steps = [
        # bindings around an If are imported outside any dataflow block, and FuseOps (and
        # the dataflow-only rewrites) skip those: wrap each run of pure bindings in one
        ("mcc.DataflowBlocks", DataflowBlocks()),
        ("mcc.FoldConstantShapes", FoldConstantShapes()),
        ("mcc.LegalizeDynamicSlice", LegalizeDynamicSlice()),  # before FoldConstant (see pass)
        ("FoldConstant", T.FoldConstant()),
        ("mcc.FoldBatchNorm", FoldBatchNorm()),
        ("mcc.Conv1dAsConv2d", Conv1dAsConv2d()),
        (f"mcc.ConvertLayout({layout})", ConvertLayout(layout, strict=strict_layout, say=say,
                                                          lanes=lanes)),
        ("mcc.ChannelPermutation", ChannelPermutation()),  # after the layout's transposes
        ("DecomposeOpsForInference", T.DecomposeOpsForInference()),
        ("CanonicalizeBindings", T.CanonicalizeBindings()),
        ("FoldConstant", T.FoldConstant()),
        ("FastMathTransform", FastMath()),  # TVM's rewrites; passes/fast_math.py
        ("LegalizeOps", T.LegalizeOps()),
        ("AnnotateTIROpPattern", T.AnnotateTIROpPattern()),
        ("FoldConstant", T.FoldConstant()),
        # run-time per-channel values for a conv's epilogue (a dynamically quantized bias):
        # computed once, not per output element inside the conv (passes/side_inputs_apart)
        ("mcc.SideInputsApart", SideInputsApart()),
        ("FuseOps", T.FuseOps()),
        # FuseOps places groups by dataflow operands only: move a group that takes a
        # symbolic var back after the match_cast binding it (passes/order_symbolic_bindings)
        ("mcc.OrderSymbolicBindings", OrderSymbolicBindings()),
        ("FuseTIR", T.FuseTIR()),
        ("DeadCodeElimination", T.DeadCodeElimination()),
    ]
    if conv_rewrites:  # before ConvertLayout: the dense parts take the CPU layout
        layout_at = [name for name, _ in steps].index(f"mcc.ConvertLayout({layout})")
        steps.insert(layout_at, ("mcc.SplitGroupedConv", SplitGroupedConv()))
        steps.insert(layout_at, ("mcc.ConvTransposeAsMatmul", ConvTransposeAsMatmul()))
    after_layout = [name for name, _ in steps].index("DecomposeOpsForInference")
    if conv_rewrites:  # after Winograd (inserted before it here): convs it did not take
        steps.insert(after_layout, ("mcc.PadChannels", PadChannels()))
    if winograd:  # after ConvertLayout: NHWC convs
        steps.insert(after_layout, ("mcc.Winograd", Winograd()))
    if bf16:  # --precision bf16, before Winograd: bf16 sites stay direct (passes/bf16.py)
        from mcc.passes.bf16 import Bf16

        steps.insert(after_layout, ("mcc.Bf16", Bf16()))
    return steps


def optimize(mod: tvm.IRModule, target: tvm.target.Target,
             layout: str = "auto", say=None, auto_choice: str | None = None,
             winograd: bool = True, bf16: bool = False) -> tuple[tvm.IRModule, list[str]]:
    """Run the graph pipeline for ``target``; return the module and the pass names applied.

    ``winograd``: 3x3 stride-1 convs as Winograd on CPU targets (mcc.passes.winograd).

    ``say`` receives a progress line where ``--layout auto`` keeps the imported layout;
    ``auto_choice`` is the candidate of ``auto`` being tried (mcc.driver.layout_choice)."""
    from mcc.targets.cpu_info import cpu_info

    # an explicit --layout must hold; auto keeps the imported layout where conversion fails
    concrete = auto_choice or resolve_layout(layout, target)
    lanes = cpu_info(target).lanes("float32") if concrete == "NCHWc" else None
    fallback = None if say is None else (lambda line: say(f"[mcc] layout: {line}"))
    # auto keeps the imported layout where conversion fails, but only for its default: a
    # later candidate that cannot convert is dropped (it would build and time NCHW again)
    strict = layout != "auto" or concrete != auto_candidates(target)[0]
    steps = graph_passes(concrete, strict_layout=strict, say=fallback,
                         winograd=winograd and kind_of(target).winograd, lanes=lanes,
                         bf16=bf16, conv_rewrites=kind_of(target).conv_rewrites)
    with target:
        for name, graph_pass in steps:
            try:
                mod = graph_pass(mod)
            except Exception as err:  # an op or pattern TVM cannot lower: say which pass
                raise graph_pass_error(name, err, mod) from None
    return mod, [name for name, _ in steps]


def graph_pass_error(name: str, err: BaseException, mod: tvm.IRModule) -> MccError:
    """One line naming the pass and TVM's reason and, where the model's inputs have symbolic
    dims, the usual cure: TVM's passes lose the shapes that symbolic dims leave unknown."""
    message = f"graph pass {name} failed on this model: {first_line(err)}"
    symbolic = symbolic_inputs(mod)
    if symbolic:
        shapes = ", ".join(f"{n}[{','.join(dims)}]" for n, dims in symbolic.items())
        example = " ".join(f"--input-shape {n}={','.join(d if d.isdigit() else '1' for d in dims)}"
                           for n, dims in symbolic.items())
        message += f" (inputs with symbolic dims: {shapes}; fix them, e.g. {example})"
    return MccError(message)


def symbolic_inputs(mod: tvm.IRModule) -> dict[str, list[str]]:
    """The dims of each input of ``main`` whose shape is not all numbers."""
    main = next((f for gv, f in mod.functions.items() if gv.name_hint == "main"), None)
    out = {}
    for param in getattr(main, "params", []):
        dims = getattr(getattr(param.ty, "shape", None), "values", None)
        if dims is not None and not all(isinstance(d, tvm.tirx.IntImm) for d in dims):
            out[param.name] = [str(int(d)) if isinstance(d, tvm.tirx.IntImm) else str(d)
                               for d in dims]
    return out
