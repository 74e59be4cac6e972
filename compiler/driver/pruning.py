"""The driver's side of ``--prune``: parse the option, run the pass, measure the drift.

``--prune zero`` removes only channels that are constant (lossless; the normal
verification against the reference then proves it). ``--prune RATIO`` removes
the lowest-norm share of each layer's filters with no fine-tuning, so outputs
move by design: the compile measures how far they moved on the calibration
samples (or seeded random inputs, saying so), records that in the report and the
module's metadata, and verifies the module against ONNX Runtime running the model
with the removed filters zeroed (for ONNX models; others say it was skipped).
"""

from __future__ import annotations

import numpy as np

from mcc.errors import MccError, first_line

CRITERIA = ("l1", "l2")
DRIFT_RANDOM_SAMPLES = 8
DRIFT_MAX_SAMPLES = 64


def parse_prune(value) -> str | float | None:
    """``None``, ``"zero"`` or a ratio in (0, 1), from the CLI / API value."""
    if value is None or value == "zero":
        return value
    try:
        ratio = float(value)
    except (TypeError, ValueError):
        raise MccError(f"--prune must be 'zero' or a ratio between 0 and 1 (e.g. 0.3), "
                       f"got '{value}'") from None
    if not 0.0 < ratio < 1.0:
        raise MccError(f"--prune ratio must be between 0 and 1 (exclusive), got {value}")
    return ratio


def check_criterion(criterion: str) -> str:
    if criterion not in CRITERIA:
        raise MccError(f"--prune-criterion must be one of: {', '.join(CRITERIA)} "
                       f"(got '{criterion}')")
    return criterion


def prune_model(mod, prune: str | float, criterion: str):
    """(pruned Relax module, PruneReport) with pass failures as one-line MccErrors."""
    from mcc.passes import prune_channels

    ratio = None if prune == "zero" else float(prune)
    try:
        return prune_channels(mod, ratio=ratio, criterion=criterion)
    except MccError:
        raise
    except Exception as err:  # a graph form the pass trips over: say it was pruning
        raise MccError(f"pruning failed on this model: {first_line(err)}") from None


def measure_drift(module, reference, calibration: str | None, seed: int = 0) -> dict:
    """How far the pruned model's outputs are from the unpruned reference's, on the
    calibration samples (or seeded random inputs): max abs error, relative L2 error and,
    for [1, K] outputs, top-1 agreement."""
    from mcc.driver.quantization import RANDOM
    from mcc.driver.sample_data import load_samples, random_samples

    inputs = module.inputs
    if calibration and calibration != RANDOM:
        samples = load_samples(calibration, inputs, max_samples=DRIFT_MAX_SAMPLES)
        source = f"{len(samples)} samples from {calibration}"
    else:
        from mcc.frontends.feeds import module_rules

        samples = random_samples(inputs, DRIFT_RANDOM_SAMPLES, seed=seed,
                                 rules=module_rules(getattr(module, "metadata", None) or {}))
        source = (f"{len(samples)} seeded random inputs "
                  f"({'--calibration random' if calibration else 'no --calibration given'})")
    names = [t.name for t in module.outputs]
    stats = {name: {"max_abs": 0.0, "sq_err": 0.0, "sq_ref": 0.0, "top1_same": 0, "top1_n": 0}
             for name in names}
    for feed in samples:
        got = module.run(feed)
        expected = reference(feed)
        for name in names:
            a = got[name].astype(np.float64)
            e = np.asarray(expected[name], dtype=np.float64)
            s = stats[name]
            s["max_abs"] = max(s["max_abs"], float(np.abs(a - e).max()) if a.size else 0.0)
            s["sq_err"] += float(((a - e) ** 2).sum())
            s["sq_ref"] += float((e ** 2).sum())
            if a.ndim == 2 and a.shape[-1] > 1:
                s["top1_same"] += int((a.argmax(-1) == e.argmax(-1)).sum())
                s["top1_n"] += a.shape[0]
    report = {"samples": source, "outputs": {}}
    for name, s in stats.items():
        entry = {"max_abs": s["max_abs"],
                 "rel_l2": float(np.sqrt(s["sq_err"] / s["sq_ref"])) if s["sq_ref"] else 0.0}
        if s["top1_n"]:
            entry["top1_agreement"] = s["top1_same"] / s["top1_n"]
        report["outputs"][name] = entry
    return report


def ratio_drift_and_reference(model, config, imported, so_path, layers: list[dict]):
    """For an exported ratio-pruned module: its drift from the unpruned reference, the
    reference to verify against (the model with the removed filters zeroed, or None), its
    name, and a summary line. The caller records the drift in the metadata and re-exports."""
    from mcc.runtime import load

    drift = measure_drift(load(so_path), imported.reference, config.calibration, config.seed)
    reference = masked_reference(model, config.input_shapes, layers,
                                 [t.name for t in imported.outputs]) if config.verify else None
    name = f"{imported.reference_name} (removed filters zeroed)"
    return drift, reference, name, drift_summary(drift)


def layer_lines(prune: dict) -> list[str]:
    """Channels before -> after of each layer pruning changed (from the metadata JSON)."""
    rows = []
    for layer in prune["layers"]:
        (ib, ia), (ob, oa) = layer["in"], layer["out"]
        if (ib, ob) != (ia, oa):
            rows.append(f"{layer['layer']:<16} in {ib:>5} -> {ia:<5} out {ob:>5} -> {oa:<5}")
    return rows


def drift_summary(drift: dict) -> str:
    parts = []
    for name, e in drift["outputs"].items():
        text = f"{name}: max abs {e['max_abs']:.3g}, rel L2 {e['rel_l2']:.3g}"
        if "top1_agreement" in e:
            text += f", top-1 agrees {e['top1_agreement']:.0%}"
        parts.append(text)
    return f"vs unpruned on {drift['samples']}: " + "; ".join(parts)


def masked_reference(model, input_shapes: dict, layers: list[dict], output_names: list[str]):
    """For an ONNX model: ONNX Runtime on the model as mcc imported it with the removed
    filters' weights set to zero (biases and batch norm kept), which is exactly what a
    ratio-pruned module computes; None (the caller says why) when the model is not ONNX or
    its weight nodes do not line up with the pruning report's layers."""
    import onnx
    from onnx import numpy_helper

    from mcc.frontends.onnx_import import (
        _fix_input_shapes,
        _fold_shape_subgraphs,
        ort_reference,
    )

    if isinstance(model, onnx.ModelProto):
        proto = model
    elif str(model).lower().endswith(".onnx"):
        proto = onnx.load(str(model))
    else:
        return None
    # the same shape fixing and folding as the import, so node order = layer order
    proto = _fold_shape_subgraphs(_fix_input_shapes(proto, input_shapes))
    inits = {i.name: i for i in proto.graph.initializer}
    nodes = [n for n in proto.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")
             and len(n.input) > 1 and n.input[1] in inits]
    if len(nodes) != len(layers):
        return None
    zeroed = []
    for node, layer in zip(nodes, layers):
        weight = numpy_helper.to_array(inits[node.input[1]]).copy()
        axis = _out_axis(node)
        if not _lines_up(node, weight, axis, layer):
            return None
        index = [slice(None)] * weight.ndim
        index[axis] = list(layer["removed"])
        weight[tuple(index)] = 0
        zeroed.append(numpy_helper.from_array(weight, node.input[1]))
    for tensor in zeroed:
        inits[tensor.name].CopyFrom(tensor)
    return ort_reference(proto.SerializeToString(), output_names)


def _out_axis(node) -> int:
    """The weight axis of the output channels: OIHW convs, Gemm with transB, else [in, out]."""
    trans_b = any(a.name == "transB" and a.i for a in node.attribute)
    return 0 if node.op_type == "Conv" or trans_b else 1


def _lines_up(node, weight, axis: int, layer: dict) -> bool:
    if weight.ndim != (4 if node.op_type == "Conv" else 2):
        return False
    if weight.shape[axis] != layer["out"][0]:
        return False
    if node.op_type == "Conv":
        kernel = f"{weight.shape[2]}x{weight.shape[3]}"
        if not layer["layer"].endswith(kernel):
            return False
        return weight.shape[1] == layer["in"][0] or layer["layer"].startswith(("depthwise",
                                                                                 "grouped"))
    return weight.shape[1 - axis] == layer["in"][0]
