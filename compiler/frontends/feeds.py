"""Model-aware synthetic inputs for verification, and what to say when they are rejected.

Why: every compile runs the built module and the reference runtime on the same
synthetic inputs. Float inputs can hold anything, but an integer input is nearly
always an index, a mask, a divisor or a shape, and values drawn blindly from
[0, 10) break real models: a BERT export's ``token_type_ids`` index a 2-row
table (ONNX Runtime refuses ``idx=7``), an integer ``Div`` / ``Mod`` gets a zero
divisor, a ``Slice`` a zero step. So :func:`feed_plan` reads how the ONNX graph
the reference runs consumes each integer / bool input (following value-preserving
ops: Cast, Identity, Unsqueeze, Squeeze, Reshape, Flatten, Transpose, Expand, Tile,
Concat, Slice, and Add / Sub of a scalar constant) and gives it a
:class:`ValueRule`:

* Gather / GatherElements / GatherND / ScatterElements / ScatterND indices, OneHot
  indices and loss labels: ``[0, size of the indexed axis)``;
* Div / Mod divisors, Slice and Range steps: non-zero;
* masks (cast to float or bool, or used by Mul / Where / logical ops): 0 / 1;
* shape-like operands (Reshape shape, Expand shape, Tile repeats, ConstantOfShape,
  Resize sizes, TopK k, Pad pads, axes): small values that are valid for any input;
* anything else keeps the old rule, [0, 10).

A rule only narrows the old range where the graph says so; when the analysis misses a
case, the reference runtime's rejection becomes a one-line user error that names the
input and asks for ``--verify-inputs FILE.npz`` (:func:`rejected_message`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import numpy as np

DEFAULT_LOW, DEFAULT_HIGH = 0, 10  # the range of an integer input nothing is known about

# ops whose output holds (a selection of) the values of their operand at these positions
# (None: any position)
_PASS_THROUGH = {
    "Identity": None, "Cast": None, "Concat": None,
    "Unsqueeze": (0,), "Squeeze": (0,), "Reshape": (0,), "Flatten": (0,), "Transpose": (0,),
    "Expand": (0,), "Tile": (0,), "Slice": (0,), "Gather": (0,), "GatherElements": (0,),
}
_MASK_OPS = {"Mul", "Where", "And", "Or", "Xor", "Not"}
_FLOAT_OR_BOOL = {1, 9, 10, 11, 16}  # TensorProto FLOAT, BOOL, FLOAT16, DOUBLE, BFLOAT16
_INT_OR_BOOL = {2, 3, 4, 5, 6, 7, 9, 12, 13}
_MAX_DEPTH = 12


@dataclass(frozen=True)
class ValueRule:
    """Which values a synthetic integer input may hold: ``[low, high)``, non-zero or not,
    or a fixed ``fill`` along the last axis ("reshape": ``[-1, 1, 1, ...]``, "arange":
    ``0, 1, 2, ...``). ``why`` says which uses set it (for messages)."""

    low: int = DEFAULT_LOW
    high: int = DEFAULT_HIGH
    nonzero: bool = False
    fill: str | None = None
    why: tuple[str, ...] = ()

    def merge(self, other: ValueRule) -> ValueRule:
        """Both rules at once; where they cannot both hold, the first one wins."""
        low, high = max(self.low, other.low), min(self.high, other.high)
        nonzero = self.nonzero or other.nonzero
        if high <= low or (nonzero and (low, high) == (0, 1)):
            return replace(self, why=self.why + other.why)
        return ValueRule(low, high, nonzero, self.fill or other.fill, self.why + other.why)

    def draw(self, rng: np.random.Generator, shape: tuple, dtype: np.dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        low = max(self.low, 0) if dtype.kind in "ub" else self.low
        high = max(self.high, low + 1)
        if dtype.kind == "b":
            low, high = max(low, 0), min(high, 2)
        if self.fill is not None and len(shape) > 0:
            row = (np.arange(shape[-1]) if self.fill == "arange"
                   else np.array([-1] + [1] * (shape[-1] - 1)))
            return np.broadcast_to(row, shape).astype(dtype)
        if self.nonzero and low <= 0 < high and high - low > 1:
            values = rng.integers(low, high - 1, size=shape)  # one value fewer, then skip 0
            values = np.where(values >= 0, values + 1, values)
        else:
            values = rng.integers(low, high, size=shape)
        return values.astype(dtype)

    def describe(self) -> str:
        if self.fill == "reshape":
            return "[-1, 1, ...]"
        if self.fill == "arange":
            return "0, 1, 2, ..."
        return f"ints in [{self.low}, {self.high}){' except 0' if self.nonzero else ''}"


DEFAULT_RULE = ValueRule()


@dataclass
class FeedPlan:
    """Value rules per input name, and enough of the graph to say which inputs reach a node."""

    rules: dict[str, ValueRule] = field(default_factory=dict)
    node_inputs: dict[str, list[str]] = field(default_factory=dict)  # node name -> operands
    producer: dict[str, str] = field(default_factory=dict)  # tensor -> node name
    graph_inputs: tuple[str, ...] = ()

    def inputs_reaching(self, node_name: str) -> list[str]:
        """The graph inputs that ``node_name`` depends on, in graph order."""
        if node_name not in self.node_inputs:
            return []
        seen, stack, found = set(), list(self.node_inputs[node_name]), set()
        while stack:
            tensor = stack.pop()
            if tensor in seen:
                continue
            seen.add(tensor)
            if tensor in self.graph_inputs:
                found.add(tensor)
            node = self.producer.get(tensor)
            if node is not None:
                stack.extend(self.node_inputs.get(node, ()))
        return [n for n in self.graph_inputs if n in found]


def feed_plan(proto) -> FeedPlan:
    """Rules for the integer / bool inputs of an ONNX model (the graph the reference runs)."""
    try:
        return _Analysis(proto).plan()
    except Exception:  # an aid for synthetic data: a graph it cannot read keeps the old rule
        return FeedPlan()


class _Analysis:
    def __init__(self, proto):
        import onnx
        from onnx import numpy_helper

        graph = proto.graph
        try:
            inferred = onnx.shape_inference.infer_shapes(proto).graph
        except Exception:  # shapes then come from the graph's own annotations only
            inferred = graph
        self.consts: dict[str, np.ndarray] = {}
        for init in graph.initializer:
            if int(np.prod(init.dims)) <= 64:  # only small operands matter (scalars, depths)
                self.consts[init.name] = numpy_helper.to_array(init)
        self.shapes: dict[str, tuple] = {init.name: tuple(init.dims)
                                         for init in graph.initializer}
        for vi in list(inferred.value_info) + list(inferred.input) + list(inferred.output):
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
                self.shapes.setdefault(vi.name, tuple(
                    d.dim_value if d.HasField("dim_value") else None
                    for d in vi.type.tensor_type.shape.dim))
        self.consumers: dict[str, list] = {}
        self.plan_ = FeedPlan()
        for index, node in enumerate(graph.node):
            name = node.name or f"#{index}"
            self.plan_.node_inputs[name] = [t for t in node.input if t]
            for out in node.output:
                self.plan_.producer[out] = name
            for position, tensor in enumerate(node.input):
                if tensor:
                    self.consumers.setdefault(tensor, []).append((node, position))
            if node.op_type == "Constant" and node.output:
                for attr in node.attribute:
                    if attr.name == "value":
                        self.consts[node.output[0]] = numpy_helper.to_array(attr.t)
                    elif attr.name in ("value_int", "value_ints"):
                        self.consts[node.output[0]] = np.asarray(
                            attr.i if attr.name == "value_int" else list(attr.ints))
        initializers = {init.name for init in graph.initializer}
        self.inputs = [vi for vi in graph.input if vi.name not in initializers]
        self.plan_.graph_inputs = tuple(vi.name for vi in self.inputs)

    def plan(self) -> FeedPlan:
        for vi in self.inputs:
            if vi.type.tensor_type.elem_type not in _INT_OR_BOOL:
                continue
            found: list[ValueRule] = []
            self._walk(vi.name, 0, 0, found, set())
            if found:
                rule = found[0]
                for other in found[1:]:
                    rule = rule.merge(other)
                self.plan_.rules[vi.name] = rule
        return self.plan_

    def _walk(self, tensor: str, offset: int, depth: int, found: list, seen: set) -> None:
        """Collect rules for the values of ``tensor`` (= input + ``offset``)."""
        if depth > _MAX_DEPTH or (tensor, offset) in seen:
            return
        seen.add((tensor, offset))
        for node, position in self.consumers.get(tensor, ()):
            op = node.op_type
            rule = self._use(node, position)
            if rule is not None:
                found.append(replace(rule, low=rule.low - offset, high=rule.high - offset,
                                     nonzero=rule.nonzero and offset == 0))
            follow = op in _PASS_THROUGH and (_PASS_THROUGH[op] is None
                                               or position in _PASS_THROUGH[op])
            if op == "Cast" and _attr(node, "to", 0) in _FLOAT_OR_BOOL:
                found.append(ValueRule(0, 2, why=(f"mask ({op} '{node.name}')",)))
                follow = False
            shift = self._scalar_shift(node, position)
            if shift is not None:
                self._walk(node.output[0], offset + shift, depth + 1, found, seen)
            elif follow and node.output:
                self._walk(node.output[0], offset, depth + 1, found, seen)

    def _scalar_shift(self, node, position: int) -> int | None:
        """c for Add(x, c) / Add(c, x), -c for Sub(x, c), with c an integral scalar constant."""
        if node.op_type not in ("Add", "Sub") or len(node.input) != 2:
            return None
        if node.op_type == "Sub" and position != 0:
            return None
        const = self.consts.get(node.input[1 - position])
        if const is None or const.size != 1 or not float(const.reshape(-1)[0]).is_integer():
            return None
        value = int(const.reshape(-1)[0])
        return value if node.op_type == "Add" else -value

    def _dim(self, tensor: str, axis: int) -> int:
        shape = self.shapes.get(tensor)
        if not shape:
            return 1  # unknown: only index 0 is surely valid
        dim = shape[axis] if -len(shape) <= axis < len(shape) else None
        return dim if dim else 1

    def _rank(self, tensor: str) -> int:
        return len(self.shapes.get(tensor) or ()) or 1

    def _use(self, node, position: int) -> ValueRule | None:
        """The rule one use of a value sets, or None."""
        op, where = node.op_type, f"{node.op_type} '{node.name}'"
        inputs = list(node.input)

        def index_range(high: int, what: str = "indices") -> ValueRule:
            return ValueRule(0, max(int(high), 1), why=(f"{what} of {where}",))

        if position == 1 and op in ("Gather", "GatherElements", "ScatterElements"):
            axis = _attr(node, "axis", 0)
            return index_range(self._dim(inputs[0], axis))
        if position == 1 and op in ("GatherND", "ScatterND"):
            shape = self.shapes.get(inputs[0]) or ()
            return index_range(min((d or 1 for d in shape), default=1))
        if op == "OneHot" and position == 0:
            depth = self.consts.get(inputs[1]) if len(inputs) > 1 else None
            return index_range(int(depth.reshape(-1)[0]) if depth is not None else 1)
        if op in ("NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss") and position == 1:
            return index_range(self._dim(inputs[0], 1), "labels")
        if op in ("Div", "Mod") and position == 1:
            return ValueRule(nonzero=True, why=(f"divisor of {where}",))
        if op in ("Slice", "Range") and position == (4 if op == "Slice" else 2):
            return ValueRule(1, 3, nonzero=True, why=(f"steps of {where}",))
        shape_like = {("Slice", 3): "axes", ("Unsqueeze", 1): "axes", ("ReduceSum", 1): "axes",
                      ("ReduceMean", 1): "axes", ("ReduceMax", 1): "axes",
                      ("ReduceMin", 1): "axes", ("ReduceProd", 1): "axes",
                      ("Reshape", 1): "reshape", ("Expand", 1): (1, 2), ("Tile", 1): (1, 3),
                      ("ConstantOfShape", 0): (1, 4), ("Resize", 3): (1, 4),
                      ("TopK", 1): (1, 2), ("OneHot", 1): (1, 4), ("Pad", 1): (0, 3),
                      ("CumSum", 1): (0, 1)}
        kind = shape_like.get((op, position))
        if kind == "axes":
            return ValueRule(0, self._rank(inputs[0]), fill="arange", why=(f"axes of {where}",))
        if kind == "reshape":
            return ValueRule(-1, 2, fill="reshape", why=(f"shape of {where}",))
        if kind is not None:
            return ValueRule(kind[0], kind[1], why=(f"operand {position} of {where}",))
        if op in _MASK_OPS:
            return ValueRule(0, 2, why=(f"mask ({where})",))
        return None


def _attr(node, name: str, default):
    for attr in node.attribute:
        if attr.name == name:
            return attr.i
    return default


def rejected_message(err: BaseException, reference_name: str, plan: FeedPlan | None,
                     specs, feed_source: str | None) -> str:
    """The one-line user error for a reference runtime that refused the verification feed.

    ``feed_source``: None for synthetic inputs, else where the user's feed came from."""
    from mcc.errors import first_line

    message = first_line(err)
    node = re.search(r"Name:'([^']*)'", str(err))
    names = plan.inputs_reaching(node.group(1)) if plan is not None and node else []
    by_name = {s.name: s for s in specs}
    picked = [n for n in names if n in by_name and np.dtype(by_name[n].dtype).kind in "iub"]
    if not picked:
        picked = names or [s.name for s in specs if np.dtype(s.dtype).kind in "iub"]
    if not picked:
        picked = [s.name for s in specs]
    rules = plan.rules if plan is not None else {}
    described = ", ".join(
        f"'{n}'" + (f" ({rules.get(n, DEFAULT_RULE).describe()})"
                    if feed_source is None and n in by_name
                    and np.dtype(by_name[n].dtype).kind in "iu" else "")
        for n in picked)
    if feed_source is not None:
        return (f"the reference runtime ({reference_name}) rejected the verification inputs "
                f"from {feed_source} (input {described}): {message}")
    return (f"the reference runtime ({reference_name}) rejected the synthetic verification "
            f"inputs (input {described}): {message}; pass real inputs with --verify-inputs "
            "FILE.npz (or skip the check with --no-verify)")


# --- the rules kept with a built module ---------------------------------------------
# The driver writes them into the module's metadata ("feeds": {input: {low, high, ...}}),
# so `mcc run` without --inputs, `mcc bench`, the prune drift measure and calibration on
# random data draw the same in-range values from a .so as verification did.

def rules_to_json(rules: dict[str, ValueRule] | None) -> dict:
    """``{input: {"low", "high", "nonzero"[, "fill"]}}`` for the module metadata."""
    out = {}
    for name, rule in (rules or {}).items():
        entry = {"low": int(rule.low), "high": int(rule.high), "nonzero": bool(rule.nonzero)}
        if rule.fill is not None:
            entry["fill"] = rule.fill
        out[name] = entry
    return out


def rules_from_json(data) -> dict[str, ValueRule]:
    """The inverse of :func:`rules_to_json`; entries it cannot read are left out."""
    rules = {}
    for name, entry in (data or {}).items():
        try:
            rules[str(name)] = ValueRule(int(entry["low"]), int(entry["high"]),
                                         bool(entry.get("nonzero", False)), entry.get("fill"))
        except (KeyError, TypeError, ValueError):
            continue
    return rules


def module_rules(metadata: dict, model_path=None) -> dict[str, ValueRule]:
    """Feed rules of a built module: its metadata's, or, for a module built before they
    were recorded, re-derived from the ONNX model at ``model_path`` or at the source path
    the metadata names (when that file is still there)."""
    if "feeds" in metadata:
        return rules_from_json(metadata["feeds"])
    source = metadata.get("source") or {}
    path = model_path or (source.get("path") if source.get("format") == "onnx" else None)
    if path is None or not str(path).endswith(".onnx"):
        return {}
    try:
        import onnx

        return feed_plan(onnx.load(str(path), load_external_data=False)).rules
    except Exception:  # an aid for synthetic data: without the model, the old rule
        return {}
