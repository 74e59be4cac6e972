"""ONNX import: load and check the file, fix input shapes, fold shape subgraphs, convert.

TVM's ONNX importer fails on Reshape/Pad/Expand whose shape operand is computed
from other tensors' shapes. With the input shapes known, those subgraphs are
constants: onnxslim folds them (with ONNX shape inference) before conversion.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np

from mcc.errors import MccError, first_line
from mcc.frontends.common import (
    ImportedModel,
    call_quietly,
    relax_specs,
)
from mcc.frontends.subbyte import widen_narrow_ints

# Ops the TVM importer handles outside its converter map.
_BUILTIN_OPS = {"If", "Constant"}


def import_onnx(model, input_shapes: dict[str, tuple[int, ...]],
                constant_inputs: dict[str, np.ndarray] | None = None) -> ImportedModel:
    """``constant_inputs`` binds graph inputs to fixed values (they become weights): for
    inputs that are really compile-time operands (reduce axes, TopK's k, Resize sizes);
    see :func:`bind_inputs` (``mcc compile --bind``)."""
    proto, label, raw = _load(model)
    proto = widen_narrow_ints(proto)  # int4/int2 held one per byte (mcc.frontends.subbyte)
    if constant_inputs:
        proto = bind_inputs(proto, constant_inputs, label)
        raw = proto.SerializeToString()
    graph_inputs = _graph_inputs(proto)
    _check_input_shape_names(graph_inputs, input_shapes, label)
    from mcc.frontends.onnx_checks import check_zero_dims

    check_zero_dims(proto.graph, graph_inputs, input_shapes, label)
    _check_supported_ops(proto, label)
    fixed = _strip_declared_shapes(_fix_input_shapes(proto, input_shapes))
    folded = _fold_shape_subgraphs(fixed)
    mod = _convert(folded, graph_inputs, input_shapes, label)
    input_names = [vi.name for vi in graph_inputs]
    output_names = [o.name for o in proto.graph.output]
    inputs, outputs = relax_specs(mod, input_names, output_names)
    source = {"format": "onnx", "path": label,
              "sha256": hashlib.sha256(raw).hexdigest(),
              "opset": _default_opset(proto), "producer": proto.producer_name}
    from mcc.frontends.feeds import feed_plan

    return ImportedModel(mod, inputs, outputs, ort_reference(raw, output_names), "onnxruntime",
                         source, feed_plan=feed_plan(fixed))


def _load(model):
    """(proto, label for messages, serialized bytes) with one-line errors for bad files."""
    import onnx
    from google.protobuf.message import DecodeError

    if isinstance(model, onnx.ModelProto):
        proto, label = model, "<in-memory ONNX model>"
    else:
        path = Path(model)
        label = str(path)
        from mcc.frontends.onnx_checks import load_onnx_file

        try:
            proto = load_onnx_file(path)
        except (DecodeError, RuntimeError, ValueError, UnicodeDecodeError) as err:
            raise MccError(f"'{label}' is not a valid ONNX model (cannot parse it: "
                           f"{first_line(err)})") from None
        except OSError as err:
            raise MccError(f"cannot read '{label}': {err.strerror}") from None
    if proto.ir_version == 0 or not proto.graph.node or not proto.graph.output:
        raise MccError(f"'{label}' is not a valid ONNX model (no graph, nodes or outputs found)")
    from mcc.frontends.onnx_checks import check_opset

    check_opset(proto, label)
    try:
        onnx.checker.check_model(proto)
    except (onnx.checker.ValidationError, UnicodeDecodeError) as err:
        raise MccError(f"'{label}' is not a valid ONNX model: {first_line(err)}") from None
    return proto, label, proto.SerializeToString()


def bind_inputs(proto, values: dict, label: str):
    """A copy of the model where the named inputs are initializers holding ``values`` (``mcc
    compile --bind``, and the conformance backend's shape operands), cast to each input's
    declared dtype and reshaped to its shape where that is static."""
    import onnx
    from onnx import helper, numpy_helper

    by_name = {vi.name: vi for vi in _graph_inputs(proto)}
    arrays = {}
    for name, value in values.items():
        if name not in by_name:
            raise MccError(f"--bind names '{name}', but '{label}' has inputs: "
                           f"{', '.join(by_name)}")
        arrays[name] = _bound_value(name, np.asarray(value), by_name[name], helper)
    bound = onnx.ModelProto()
    bound.CopyFrom(proto)
    kept = [vi for vi in bound.graph.input if vi.name not in arrays]
    del bound.graph.input[:]
    bound.graph.input.extend(kept)
    for name, array in arrays.items():
        bound.graph.initializer.append(numpy_helper.from_array(array, name))
    return bound


def _bound_value(name: str, value: np.ndarray, vi, helper) -> np.ndarray:
    elem = vi.type.tensor_type.elem_type if vi.type.HasField("tensor_type") else 0
    if not elem:
        raise MccError(f"--bind {name}: input '{name}' is not a tensor")
    dtype = helper.tensor_dtype_to_np_dtype(elem)
    with np.errstate(all="ignore"):
        array = value.astype(dtype)
        exact = value.dtype == dtype or bool(np.all(array.astype(value.dtype) == value))
    if not exact:
        raise MccError(f"--bind {name}: values {value.reshape(-1).tolist()[:8]} do not fit "
                       f"input '{name}' of dtype {dtype}")
    dims = _dims(vi)
    static = all(isinstance(d, int) and d > 0 for d in dims)
    if vi.type.tensor_type.HasField("shape") and static:
        if int(np.prod(dims)) != array.size:
            raise MccError(f"--bind {name}: {array.size} values, but input '{name}' has "
                           f"shape {dims}")
        array = array.reshape(dims)
    return array


def _graph_inputs(proto):
    initializers = {init.name for init in proto.graph.initializer}
    return [vi for vi in proto.graph.input if vi.name not in initializers]


def _dims(value_info) -> list:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in value_info.type.tensor_type.shape.dim]


def _check_input_shape_names(graph_inputs, input_shapes, label):
    by_name = {vi.name: vi for vi in graph_inputs}
    for name, shape in input_shapes.items():
        if name not in by_name:
            raise MccError(f"--input-shape names '{name}', but '{label}' has inputs: "
                           f"{', '.join(by_name)}")
        dims = _dims(by_name[name])
        if len(dims) != len(shape):
            raise MccError(f"--input-shape {name}={','.join(map(str, shape))} has rank "
                           f"{len(shape)}, but input '{name}' has shape {dims}")
        for axis, (have, want) in enumerate(zip(dims, shape)):
            if isinstance(have, int) and have > 0 and have != want:
                raise MccError(f"--input-shape {name}: axis {axis} is fixed to {have} in the "
                               f"model, cannot set it to {want}")


def _default_opset(proto) -> int:
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    return 1


def _check_supported_ops(proto, label):
    """Name the first unsupported op, its node and the opset, before TVM tries."""
    from mcc.frontends.onnx_ops import convert_map
    from mcc.frontends.onnx_ops.contrib import DOMAIN, contrib_name

    known = set(convert_map()) | _BUILTIN_OPS
    opsets = {e.domain or "ai.onnx": e.version for e in proto.opset_import}
    for index, node, where in _all_nodes(proto.graph):
        domain = node.domain or "ai.onnx"
        if domain == DOMAIN and contrib_name(node.op_type) in known:
            continue
        if domain != "ai.onnx" or node.op_type not in known:
            node_name = node.name or f"#{index}"
            raise MccError(f"unsupported ONNX op '{node.op_type}' (domain {domain}, opset "
                           f"{opsets.get(domain, '?')}) at node '{node_name}'{where} "
                           f"in '{label}'")


def _all_nodes(graph, where=""):
    """(index, node, location) of every node, including those in If/Loop/Scan bodies."""
    for index, node in enumerate(graph.node):
        yield index, node, where
        for attr in node.attribute:
            subgraphs = [attr.g] if attr.HasField("g") else list(attr.graphs)
            for sub in subgraphs:
                inner = f" (in {attr.name} of {node.op_type} '{node.name or f'#{index}'}')"
                yield from _all_nodes(sub, inner)


def _fix_input_shapes(proto, input_shapes):
    """A copy of the model whose named inputs have the given static shapes."""
    if not input_shapes:
        return proto
    import onnx

    fixed = onnx.ModelProto()
    fixed.CopyFrom(proto)
    for vi in fixed.graph.input:
        if vi.name in input_shapes:
            for dim, value in zip(vi.type.tensor_type.shape.dim, input_shapes[vi.name]):
                dim.Clear()
                dim.dim_value = value
    return fixed


def _strip_declared_shapes(proto):
    """A copy without the shapes the exporter declared for outputs and intermediate values
    (value_info), in every (sub)graph: they can be wrong (a flattened output, a stale
    batch size), and shape inference and folding would trust them over what the graph
    computes (a ``Shape`` of such a value folds to the declared dims). Types are kept."""
    import onnx

    stripped = onnx.ModelProto()
    stripped.CopyFrom(proto)
    stack = [stripped.graph]
    while stack:
        graph = stack.pop()
        del graph.value_info[:]
        for vi in graph.output:
            if vi.type.HasField("tensor_type"):
                vi.type.tensor_type.ClearField("shape")
        for node in graph.node:
            for attr in node.attribute:
                stack.extend([attr.g] if attr.HasField("g") else list(attr.graphs))
    return stripped


def _fold_shape_subgraphs(proto):
    """Constant-fold shape computations with onnxslim; keep the model as is if that fails."""
    try:
        import onnxslim
    except ImportError:  # optional: import still works on models without shape chains
        return proto
    logging.getLogger("onnxslim").setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            slimmed = onnxslim.slim(proto)
    except Exception:  # onnxslim is an optimisation, not a requirement
        return proto
    same_io = ([i.name for i in _graph_inputs(slimmed)] == [i.name for i in _graph_inputs(proto)]
               and [o.name for o in slimmed.graph.output] == [o.name for o in proto.graph.output])
    return slimmed if slimmed is not None and same_io else proto


def _convert(proto, graph_inputs, input_shapes, label):
    from tvm.relax.frontend.onnx import from_onnx

    from mcc.frontends.onnx_ops import extended_convert_map

    with extended_convert_map():  # mcc's own converters (LSTM, GRU, ...) on top of TVM's
        from mcc.frontends.onnx_ops.contrib import namespace_contrib_ops

        proto = namespace_contrib_ops(proto)  # com.microsoft ops under their own names
        mod, failure = call_quietly(from_onnx, proto, keep_params_in_input=False)
    if mod is not None:
        return mod
    symbolic = [vi for vi in graph_inputs if vi.name not in input_shapes
                and any(not isinstance(d, int) or d <= 0 for d in _dims(vi))]
    if symbolic:
        vi = symbolic[0]
        dims = _dims(vi)
        example = ",".join(str(d) if isinstance(d, int) and d > 0 else "1" for d in dims)
        raise MccError(f"input '{vi.name}' has symbolic shape {dims} that mcc cannot keep "
                       f"symbolic here ({failure}); fix it with --input-shape "
                       f"{vi.name}={example}")
    raise MccError(f"cannot import '{label}': {failure}")


def ort_reference(raw: bytes, output_names: list[str]):
    """Run the original model in ONNX Runtime (CPU): the numbers mcc must match.

    A model ONNX Runtime cannot load raises mcc.errors.ReferenceUnavailable."""
    session = boundary = None

    def run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        nonlocal session, boundary
        if session is None:
            import onnxruntime as ort

            from mcc.errors import ReferenceUnavailable
            from mcc.frontends.ort_boundary import numpy_boundary

            options = ort.SessionOptions()
            options.log_severity_level = 4  # failures are raised; no red log lines on stderr
            try:
                boundary = numpy_boundary(raw)  # bfloat16/float8/int4 in or out: cast inside
                session = ort.InferenceSession(boundary.model, options,
                                               providers=["CPUExecutionProvider"])
            except Exception as err:  # e.g. NOT_IMPLEMENTED: an op or type ORT lacks
                raise ReferenceUnavailable(f"onnxruntime cannot load the model: "
                                           f"{first_line(err)}") from None
        values = session.run(boundary.fetch_names(output_names), boundary.feed(feed))
        return {name: boundary.result(name, v) for name, v in zip(output_names, values)}

    return run
