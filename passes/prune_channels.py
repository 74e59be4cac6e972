"""Structured pruning that physically removes channels from the Relax graph.

Two modes:

* ``zero`` (lossless): a conv filter or dense output feature whose weights are
  all zero (as ``torch.nn.utils.prune.ln_structured`` + ``prune.remove`` leave
  them) makes a channel whose value is a constant: 0, or a bias / batch-norm
  shift, or whatever the activations after it make of that. Such a channel is
  removed, with the matching input slices of its consumers, and its constant
  is folded into those consumers exactly:

      conv(x, W) with input channel k == v everywhere
        = conv(x without k, W without k) + B,
      B[o, y, x] = v * sum of W[o, k, i, j] over the taps (i, j) that land inside
                   the (unpadded) input at output position (y, x)

  B is one bias per output channel where padding is zero; with padding it
  differs at the borders and is added as a full [1, O, H, W] bias map. A dense
  consumer gets ``b += v * W[k, :]``.

  The same holds from the input side: a channel that every consumer weighs with
  zeros (its input slice of each conv / dense weight is all zero) is never seen,
  whatever its value, so it goes with the filters that produce it.

* a ratio (``0 < r < 1``): in each group of channels produced by the same
  layers, up to ``floor(r * n)`` filters (fewer where that keeps the remaining
  count a multiple of 16 in layers of 64 channels or more, so kernels stay vectorised;
  zero mode keeps zero channels for the same reason) with the lowest l1 / l2 norm (relative
  to the layer's mean, summed over the layers that produce the channel) are
  treated as zero, then removed exactly as above. This changes the outputs;
  no fine-tuning happens, so accuracy drops by whatever those filters carried.

Channels are removed only where the whole channel class can go (see
``mcc.passes.channel_graph``): a residual add removes a channel only if it is
removable in every branch meeting there, and graph inputs and outputs keep all
their channels. Runs before the lowering pipeline, on the imported graph after
constant folding and batch-norm folding (so ONNX and PyTorch models look the
same: conv + bias add).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax

from mcc.passes.channel_graph import ChannelGraph, Step, analyse
from mcc.passes.fold_batch_norm import FoldBatchNorm
from mcc.passes.model_cost import ModelCost, model_cost
from mcc.passes.shapes import static_shape

CRITERIA = ("l1", "l2")


@dataclass(frozen=True)
class LayerChange:
    label: str
    in_before: int
    in_after: int
    out_before: int
    out_after: int
    removed: tuple[int, ...]  # indices (in the original layer) of the removed output channels

    def to_json(self) -> dict:
        return {"layer": self.label, "in": [self.in_before, self.in_after],
                "out": [self.out_before, self.out_after], "removed": list(self.removed)}


@dataclass
class PruneReport:
    """What pruning removed and what it saved. ``fine_tuned`` is always False: mcc does
    not retrain, so a ratio prune's accuracy cost is whatever the removed filters carried."""

    mode: str  # "zero" or "ratio"
    ratio: float | None
    criterion: str | None
    before: ModelCost
    after: ModelCost
    layers: list[LayerChange] = field(default_factory=list)
    channels_removed: int = 0  # channel classes removed (one may span several tensors)
    bias_maps: int = 0  # conv consumers that needed a full border-aware bias map
    note: str = ""
    fine_tuned: bool = False

    def summary(self) -> str:
        what = "zero filters" if self.mode == "zero" else \
            f"{self.criterion} ratio {self.ratio:g} (no fine-tuning)"
        return (f"{what}: {self.channels_removed} channels removed; params "
                f"{_millions(self.before.params)} -> {_millions(self.after.params)}, GFLOPs "
                f"{self.before.flops / 1e9:.3g} -> {self.after.flops / 1e9:.3g}"
                + (f"; {self.note}" if self.note else ""))

    def to_json(self) -> dict:
        return {"mode": self.mode, "ratio": self.ratio, "criterion": self.criterion,
                "fine_tuned": self.fine_tuned, "before": self.before.to_json(),
                "after": self.after.to_json(), "channels_removed": self.channels_removed,
                "bias_maps": self.bias_maps, "note": self.note,
                "layers": [ch.to_json() for ch in self.layers]}


def _millions(n: int) -> str:
    return f"{n / 1e6:.3g}M"


def prune_channels(mod: tvm.IRModule, ratio: float | None = None,
                   criterion: str = "l1") -> tuple[tvm.IRModule, PruneReport]:
    """Remove zero channels (``ratio`` None) or the lowest-norm share ``ratio`` of each
    layer's channels from ``mod["main"]``; return the smaller module and a report."""
    if ratio is not None and not 0.0 < ratio < 1.0:
        raise ValueError(f"prune ratio must be between 0 and 1, got {ratio}")
    if criterion not in CRITERIA:
        raise ValueError(f"prune criterion must be one of {', '.join(CRITERIA)}")
    mode = "zero" if ratio is None else "ratio"
    mod = FoldBatchNorm()(relax.transform.FoldConstant()(mod))
    before = model_cost(mod)
    report = PruneReport(mode, ratio, criterion if ratio is not None else None, before, before)
    func = mod["main"]
    graph = analyse(func)
    if graph is None:
        report.note = "main has a form pruning does not handle; nothing removed"
        return mod, report
    chosen = _choose(graph, ratio, criterion) if ratio is not None else set()
    values = _constant_values(graph, chosen)
    removed = _removable(graph, values, _unread(graph))
    if ratio is None:
        removed = _align_removed(graph, removed)
    removed = _equal_groups(graph, removed)
    if not removed:
        report.layers = _layer_changes(graph, removed)
        return mod, report
    rewriter = _Rewriter(graph, values, removed)
    new_func = rewriter.rebuild(func)
    out = mod.clone()
    out["main"] = new_func
    report.after = model_cost(out)
    report.layers = _layer_changes(graph, removed)
    report.channels_removed = len(removed)
    report.bias_maps = rewriter.bias_maps
    return out, report


# choosing filters (ratio mode) -----------------------------------------------------------

# in groups of ALIGN_FROM channels or more, the kept channels are a multiple of
# CHANNEL_ALIGN (a full AVX-512 fp32 vector)
CHANNEL_ALIGN = 16
ALIGN_FROM = 64

def _choose(graph: ChannelGraph, ratio: float, criterion: str) -> set[int]:
    """Class roots to treat as zero: per group of classes produced by the same layers, the
    floor(ratio * n) with the lowest summed relative filter norm."""
    scores: dict[int, float] = {}
    for layer in _ranked_layers(graph):
        rows = layer.filters()
        norms = (np.abs(rows).sum(axis=1) if criterion == "l1"
                 else np.sqrt((rows.astype(np.float64) ** 2).sum(axis=1)))
        mean = float(norms.mean()) or 1.0
        for o, norm in enumerate(norms):
            root = graph.find(layer.out.base + o)
            if not graph.pinned[root]:
                scores[root] = scores.get(root, 0.0) + float(norm) / mean
    chosen: set[int] = set()
    for roots in _groups(graph):
        count = _aligned_count(len(roots), int(math.floor(ratio * len(roots) + 1e-9)))
        chosen.update(sorted(roots, key=lambda r: (scores[r], r))[:count])
    return chosen


def _ranked_layers(graph: ChannelGraph):
    # a depthwise conv rides along with the channel it filters: too small to rank by
    return [layer for layer in graph.layers if layer.kind != "depthwise"]


def _groups(graph: ChannelGraph) -> list[list[int]]:
    """Unpinned class roots grouped by the set of layers producing them, and by the conv
    group they fall in where a grouped conv reads or writes them (so a ratio takes the same
    share from every conv group, and the groups stay the same size)."""
    producers: dict[int, set] = {}
    for layer in _ranked_layers(graph):
        for o in range(layer.out.channels):
            root = graph.find(layer.out.base + o)
            if not graph.pinned[root]:
                producers.setdefault(root, set()).add(layer.index)
    for layer in graph.layers:
        if layer.kind != "grouped":
            continue
        for tensor in (layer.inp, layer.out):
            per_group = tensor.channels // layer.groups
            for c in range(tensor.channels):
                root = graph.find(tensor.base + c)
                if root in producers:
                    producers[root].add((layer.index, c // per_group))
    groups: dict[frozenset, list[int]] = {}
    for root, layers in producers.items():
        groups.setdefault(frozenset(layers), []).append(root)
    return list(groups.values())


def _align_removed(graph: ChannelGraph, removed: set[int]) -> set[int]:
    """Keep some removable zero channels so every group keeps whole vectors (zero mode:
    a kept zero channel is still exact, just not free)."""
    kept_back: set[int] = set()
    for roots in _groups(graph):
        gone = sorted(r for r in roots if r in removed)
        kept_back.update(gone[_aligned_count(len(roots), len(gone)):])
    return removed - kept_back


def _equal_groups(graph: ChannelGraph, removed: set[int]) -> set[int]:
    """Keep back removable channels until every grouped conv loses as many input (and as
    many output) channels from each of its groups: a conv's groups are all one size."""
    removed = set(removed)
    changed = True
    while changed:
        changed = False
        for layer in graph.layers:
            if layer.kind != "grouped":
                continue
            for tensor in (layer.inp, layer.out):
                per_group = tensor.channels // layer.groups
                gone = [[c for c in range(j * per_group, (j + 1) * per_group)
                         if graph.find(tensor.base + c) in removed]
                        for j in range(layer.groups)]
                count = min(min(len(g) for g in gone), per_group - 1)
                for extra in (c for g in gone for c in g[count:]):
                    removed.discard(graph.find(tensor.base + extra))
                    changed = True
    return removed


def _aligned_count(channels: int, count: int) -> int:
    """Remove at most ``count`` of ``channels`` so that a multiple of CHANNEL_ALIGN remains.

    The CPU kernels vectorise along channels (NHWC): 45 channels instead of 64 leave a
    remainder no SIMD lane width divides, and the kernel falls back to scalar code that is
    far slower than the unpruned one (measured: ResNet-50 at ratio 0.3 went from 44 ms to
    816 ms). So a ratio prunes "up to" its share, keeping whole vectors.
    """
    if channels < ALIGN_FROM or channels % CHANNEL_ALIGN:
        return count  # small layers cost little either way: prune them exactly
    keep = -(-(channels - count) // CHANNEL_ALIGN) * CHANNEL_ALIGN  # round up
    return channels - keep


# which channels are constant -------------------------------------------------------------

def _constant_values(graph: ChannelGraph, chosen: set[int]) -> dict[int, np.ndarray]:
    """Tensor base -> value per channel where that channel is one constant everywhere
    (NaN where it is not or not known), given that filters of ``chosen`` classes are zero."""
    values: dict[int, np.ndarray] = {}

    def get(tensor):
        return values.get(tensor.base, np.full(tensor.channels, np.nan))

    for step in graph.steps:
        out = step.out
        if out.base in values:  # an alias of a tensor already evaluated
            continue
        values[out.base] = _step_values(graph, step, [get(t) for t in step.inputs], chosen)
    return values


def _zero_filters(graph: ChannelGraph, layer, chosen: set[int]) -> np.ndarray:
    rows = layer.filters()
    zero = ~rows.any(axis=1)
    for o in range(layer.out.channels):
        if graph.find(layer.out.base + o) in chosen:
            zero[o] = True
    return zero


_UNARY = {
    "relax.nn.relu": lambda v, c: np.maximum(v, 0.0),
    "relax.nn.relu6": lambda v, c: np.clip(v, 0.0, 6.0),
    "relax.sigmoid": lambda v, c: 1.0 / (1.0 + np.exp(-v)),
    "relax.tanh": lambda v, c: np.tanh(v),
    "relax.nn.silu": lambda v, c: v / (1.0 + np.exp(-v)),
    "relax.nn.gelu": lambda v, c: 0.5 * v * (1.0 + np.vectorize(math.erf)(v / math.sqrt(2.0))),
    "relax.negative": lambda v, c: -v,
    "relax.exp": lambda v, c: np.exp(v),
    "relax.abs": lambda v, c: np.abs(v),
    "relax.square": lambda v, c: v * v,
    "relax.sqrt": lambda v, c: np.sqrt(v),
    "relax.clip": lambda v, c: np.clip(v, _prim(c.args[1]), _prim(c.args[2])),
    "relax.nn.leakyrelu": lambda v, c: np.where(v >= 0, v, v * float(c.attrs.alpha)),
}
_BINARY = {
    "relax.add": np.add, "relax.subtract": np.subtract, "relax.multiply": np.multiply,
    "relax.divide": np.divide, "relax.maximum": np.maximum, "relax.minimum": np.minimum,
}


def _prim(value) -> float:
    return float(value.value.value)


def _step_values(graph, step: Step, inputs: list[np.ndarray], chosen) -> np.ndarray:
    nan = np.full(step.out.channels, np.nan)
    kind, call = step.kind, step.call
    with np.errstate(all="ignore"):
        if kind in ("conv2d", "grouped", "dense"):
            return np.where(_zero_filters(graph, step.layer, chosen), 0.0, np.nan)
        if kind == "depthwise":
            zero = _zero_filters(graph, step.layer, chosen)
            v = inputs[0]
            padded = any(int(p) for p in call.attrs.padding)
            through = v * step.layer.weight.reshape(len(v), -1).sum(axis=1)
            through = np.where(v == 0, 0.0, np.nan if padded else through)
            return np.where(zero, 0.0, through)
        if kind == "unary":
            fn = _UNARY.get(call.op.name)
            return fn(inputs[0], call) if fn else nan
        if kind == "binary_const":
            const = np.broadcast_to(step.const.astype(np.float64), inputs[0].shape)
            pair = (const, inputs[0]) if step.const_first else (inputs[0], const)
            return _BINARY[call.op.name](*pair)
        if kind == "binary":
            return _BINARY[call.op.name](inputs[0], inputs[1])
        if kind == "pool":
            v = inputs[0]
            if call.op.name == "relax.nn.avg_pool2d" and call.attrs.count_include_pad \
                    and (any(int(p) for p in call.attrs.padding) or call.attrs.ceil_mode):
                return np.where(v == 0, 0.0, np.nan)  # padded zeros dilute it at the borders
            return v
        if kind == "reduce":
            if call.op.name != "relax.sum":
                return inputs[0]
            shape = step.inputs[0].shape
            count = int(np.prod([shape[int(a) % len(shape)] for a in call.attrs.axis]))
            return inputs[0] * count
        if kind == "reshape":
            return inputs[0]
        if kind == "concat":
            return np.concatenate(inputs)
        if kind == "bn_get":
            gamma, beta, mean, var = (a.value.numpy().astype(np.float64) for a in call.args[1:5])
            if not call.attrs.scale:
                gamma = np.ones_like(gamma)
            if not call.attrs.center:
                beta = np.zeros_like(beta)
            return (inputs[0] - mean) / np.sqrt(var + float(call.attrs.epsilon)) * gamma + beta
    return nan


def _unread(graph: ChannelGraph) -> set[int]:
    """Class roots that every consuming layer weighs with zeros (input-side zero weights):
    whatever their value, nothing downstream sees it, so the filters producing them can go.

    Only convs (groups 1) and dense layers consume a class; every other reader either
    joins the class (elementwise, pooling, concat, depthwise) or pins it (outputs, opaque
    ops), so a class all of whose consumers ignore it is dead once it is unpinned."""
    read: dict[int, bool] = {}
    for layer in graph.layers:
        if layer.kind == "depthwise":
            continue
        slices = layer.weight if layer.kind == "dense" else layer.weight.swapaxes(0, 1)
        for c in range(layer.inp.channels):
            root = graph.find(layer.inp.base + c)
            read[root] = read.get(root, False) or bool(slices[c].any())
    return {root for root, used in read.items() if not used and not graph.pinned[root]}


def _removable(graph: ChannelGraph, values: dict[int, np.ndarray],
               unread: set[int] = frozenset()) -> set[int]:
    """Class roots that are constant (or ``unread``) in every tensor they span and pinned
    nowhere, keeping at least one channel in every tensor."""
    known = np.zeros(len(graph.parent), dtype=bool)
    for tensor in _unique_tensors(graph):
        v = values.get(tensor.base)
        if v is not None:
            known[tensor.base:tensor.base + tensor.channels] = np.isfinite(v)
    removable: dict[int, bool] = {}
    for node in range(len(graph.parent)):
        root = graph.find(node)
        ok = removable.get(root, not graph.pinned[root])
        removable[root] = ok and (bool(known[node]) or root in unread)
    removed = {root for root, ok in removable.items() if ok}
    for tensor in _unique_tensors(graph):  # a tensor with no channels left is not a tensor
        roots = [graph.find(n) for n in tensor.nodes()]
        if roots and all(r in removed for r in roots):
            removed.discard(roots[0])
    return removed


def _unique_tensors(graph: ChannelGraph):
    seen = set()
    for tensor in graph.tensors.values():
        if tensor.base not in seen:
            seen.add(tensor.base)
            yield tensor


def _layer_changes(graph: ChannelGraph, removed: set[int]) -> list[LayerChange]:
    changes = []
    for layer in graph.layers:
        gone_out = [o for o in range(layer.out.channels)
                    if graph.find(layer.out.base + o) in removed]
        gone_in = sum(graph.find(n) in removed for n in layer.inp.nodes())
        changes.append(LayerChange(layer.label, layer.inp.channels, layer.inp.channels - gone_in,
                                   layer.out.channels, layer.out.channels - len(gone_out),
                                   tuple(gone_out)))
    return changes


# rebuilding the function -----------------------------------------------------------------

class _Rewriter:
    """Re-emits ``main`` binding by binding with the removed channels sliced out."""

    def __init__(self, graph: ChannelGraph, values: dict[int, np.ndarray], removed: set[int]):
        self.graph, self.values, self.removed = graph, values, removed
        self.vars: dict = {}
        self.steps = {step.var: step for step in graph.steps}
        self.bias_maps = 0

    def keep(self, tensor) -> np.ndarray:
        return np.array([c for c in range(tensor.channels)
                         if self.graph.find(tensor.base + c) not in self.removed], dtype=np.int64)

    def gone(self, tensor) -> np.ndarray:
        return np.array([c for c in range(tensor.channels)
                         if self.graph.find(tensor.base + c) in self.removed], dtype=np.int64)

    def sub(self, expr):
        if isinstance(expr, relax.Var):
            return self.vars.get(expr, expr)
        if isinstance(expr, relax.Tuple):
            return relax.Tuple([self.sub(f) for f in expr.fields])
        if isinstance(expr, relax.TupleGetItem):
            return relax.TupleGetItem(self.sub(expr.tuple_value), expr.index)
        return expr

    def rebuild(self, func: relax.Function) -> relax.Function:
        bb = relax.BlockBuilder()
        attrs = dict(func.attrs) if func.attrs is not None else None
        with bb.function("main", list(func.params), attrs=attrs):
            for block in func.body.blocks:
                if isinstance(block, relax.DataflowBlock):
                    with bb.dataflow():
                        outputs = [self._emit(bb, b) for b in block.bindings]
                        for binding, new in zip(block.bindings, outputs):
                            if not isinstance(binding.var, relax.DataflowVar):
                                self.vars[binding.var] = bb.emit_output(
                                    new, name_hint=binding.var.name)
                else:
                    for binding in block.bindings:
                        self.vars[binding.var] = self._emit(bb, binding)
            bb.emit_func_output(self.sub(func.body.body))
        return bb.get()["main"]

    def _emit(self, bb, binding):
        value = self._rewrite(bb, binding.var, binding.value)
        var = bb.emit(value, name_hint=binding.var.name)
        self.vars[binding.var] = var
        return var

    def _rewrite(self, bb, var, value):
        step = self.steps.get(var)
        if step is not None and step.kind in ("conv2d", "grouped", "depthwise", "dense"):
            return getattr(self, f"_{step.kind}")(bb, step)
        if step is not None and step.kind == "binary_const":
            return self._binary_const(step)
        if step is not None and step.kind == "reshape":
            shape = list(static_shape(var))
            shape[step.out.axis] = len(self.keep(step.out))
            return relax.op.reshape(self.sub(value.args[0]), shape)
        if var in self.graph.bn_inputs:
            tensor, call = self.graph.bn_inputs[var]
            keep = self.keep(tensor)
            params = [relax.const(a.value.numpy()[keep]) for a in call.args[1:5]]
            return relax.Call(call.op, [self.sub(call.args[0]), *params], call.attrs,
                              call.ty_args)
        if isinstance(value, relax.Call):
            return relax.Call(value.op, [self.sub(a) for a in value.args], value.attrs,
                              value.ty_args)
        return self.sub(value)

    def _grouped(self, bb, step: Step):
        """Each group's kept outputs over its kept inputs, stacked: [O', C_in' / groups]."""
        layer = step.layer
        keep_in, keep_out = self.keep(layer.inp), self.keep(layer.out)
        per_in, per_out = layer.inp.channels // layer.groups, layer.out.channels // layer.groups
        blocks = [layer.weight[keep_out[keep_out // per_out == j]][:, keep_in[keep_in // per_in
                                                                              == j]]
                  for j in range(layer.groups)]
        return self._conv2d(bb, step, np.concatenate(blocks))

    def _conv2d(self, bb, step: Step, weight: np.ndarray | None = None):
        call, layer = step.call, step.layer
        keep_in, keep_out = self.keep(layer.inp), self.keep(layer.out)
        if weight is None:
            weight = layer.weight[keep_out][:, keep_in]
        conv = relax.Call(call.op, [self.sub(call.args[0]), relax.const(weight)], call.attrs,
                          call.ty_args)
        bias = self._conv_fold(step)
        if bias is None:
            return conv
        return relax.op.add(bb.emit(conv), relax.const(bias[:, keep_out]))

    def _conv_fold(self, step: Step) -> np.ndarray | None:
        """The bias (map) that the removed, constant input channels contribute."""
        layer, attrs = step.layer, step.call.attrs
        gone = self.gone(layer.inp)
        if not len(gone):
            return None
        v = self._gone_values(layer.inp, gone)
        if not v.any():
            return None
        w = layer.weight[:, gone].astype(np.float64)  # O, k, KH, KW
        wv = np.einsum("okij,k->oij", w, v)
        _, _, height, width = layer.inp.shape
        _, _, out_h, out_w = step.out.shape
        top, left = int(attrs.padding[0]), int(attrs.padding[1])
        (sh, sw), (dh, dw) = (int(s) for s in attrs.strides), (int(d) for d in attrs.dilation)
        rows = _inside(out_h, wv.shape[1], sh, dh, top, height)
        cols = _inside(out_w, wv.shape[2], sw, dw, left, width)
        bias = np.einsum("oij,iy,jx->oyx", wv, rows, cols)
        flat = bias.reshape(bias.shape[0], -1)
        uniform = np.all(np.abs(flat - flat[:, :1]) <= 1e-12 * (1 + np.abs(flat[:, :1])))
        dtype = layer.weight.dtype
        if uniform:
            return flat[:, 0].reshape(1, -1, 1, 1).astype(dtype)
        self.bias_maps += 1
        return bias[None].astype(dtype)

    def _gone_values(self, tensor, gone: np.ndarray) -> np.ndarray:
        """The constants of removed input channels; an unread channel has no known value
        (NaN) but only zero weights here, so it contributes 0."""
        v = self.values[tensor.base][gone]
        return np.where(np.isnan(v), 0.0, v)

    def _depthwise(self, bb, step: Step):
        call, layer = step.call, step.layer
        keep = self.keep(layer.out)
        a = call.attrs
        return relax.op.nn.conv2d(
            self.sub(call.args[0]), relax.const(layer.weight[keep]),
            strides=[int(s) for s in a.strides], padding=[int(p) for p in a.padding],
            dilation=[int(d) for d in a.dilation], groups=len(keep), data_layout="NCHW",
            kernel_layout="OIHW", out_dtype=a.out_dtype if str(a.out_dtype) else None)

    def _dense(self, bb, step: Step):
        call, layer = step.call, step.layer
        keep_in, keep_out = self.keep(layer.inp), self.keep(layer.out)
        matmul = relax.Call(call.op, [self.sub(call.args[0]),
                                      relax.const(layer.weight[keep_in][:, keep_out])],
                            call.attrs, call.ty_args)
        gone = self.gone(layer.inp)
        if not len(gone):
            return matmul
        v = self._gone_values(layer.inp, gone)
        if not v.any():
            return matmul
        bias = (v @ layer.weight[gone].astype(np.float64))[keep_out]
        return relax.op.add(bb.emit(matmul), relax.const(bias.astype(layer.weight.dtype)))

    def _binary_const(self, step: Step):
        call = step.call
        index = 0 if step.const_first else 1
        const = call.args[index].value.numpy()
        rank = len(step.out.shape)
        axis = step.out.axis - (rank - const.ndim)
        if axis >= 0 and const.shape[axis] > 1:
            const = np.take(const, self.keep(step.out), axis=axis)
        args = [self.sub(a) for a in call.args]
        args[index] = relax.const(const)
        return relax.Call(call.op, args, call.attrs, call.ty_args)


def _inside(out_len: int, taps: int, stride: int, dilation: int, pad: int,
            in_len: int) -> np.ndarray:
    """[tap, output position] -> 1 where that tap reads the input, 0 where it reads padding."""
    pos = np.arange(out_len)[None, :] * stride - pad + np.arange(taps)[:, None] * dilation
    return ((pos >= 0) & (pos < in_len)).astype(np.float64)
