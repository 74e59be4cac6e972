"""``mcc compare``: which layer of a compiled model loses accuracy.

For an ONNX model, every activation is exposed as a graph output (mcc.verify.marking),
that marked model is compiled with the user's options (verification off) and run, and the
same marked model runs in ONNX Runtime fp32 (or through mcc's own fp32 build,
``reference="fp32"``); the tensors are then diffed in graph order (mcc.verify.layers).
This was chosen over instrumenting the built module because mcc's fused kernels keep
most intermediates in registers: no compiled module holds them, so they must be graph
outputs, the one thing both runtimes return by name. It is what Polygraphy's "mark all"
does, with the same cost: a marked tensor must be materialised, so it can no longer be
fused into its consumer or folded away (with a conv's output before a batch norm marked,
an int8 build runs that conv twice: once for the marked tensor, once with the batch norm
folded in). The numbers are those of the marked build, whose int8 op count the report
gives. Measured (int8, loaded 2-core VM): marking all 100 activations of MobileNetV2
kept its 36 int8 ops and its output error, at 69 s against 62 s for the plain compile;
all 387 of a BERT-base-like encoder, 108 s against 112 s. So everything is marked by
default; ``layers`` (op types, node or tensor names) marks fewer.

For a compiled ``.so`` only its outputs can be compared (its intermediates are gone):
against ONNX Runtime on ``reference_model``, by default the model it was built from.
"""

from __future__ import annotations

import time
from pathlib import Path

from mcc.errors import MccError, first_line
from mcc.verify.layers import DEFAULT_THRESHOLD, CompareReport, diff_layers
from mcc.verify.marking import Layer, mark_layers

REFERENCES = ("ort", "fp32")
MANY_LAYERS = 500  # more marked tensors than this: suggest --layers
# CompileConfig fields that lower precision: mcc's fp32 reference build leaves them out
_LOW_PRECISION = ("quantize", "calibration", "calibration_method", "per_tensor", "exclude",
                  "accuracy_budget", "holdout", "precision")
# CompileConfig fields about verification, which compare replaces
_VERIFY = ("verify", "verify_inputs", "rtol", "atol")
_IN_MEMORY = "<in-memory ONNX model>"  # mcc.frontends.onnx_import's label for a proto


def compare(model, inputs=None, reference: str = "ort", reference_model=None, layers=(),
            threshold: float = DEFAULT_THRESHOLD, target=None, input_shapes=None,
            progress=None, **options) -> CompareReport:
    """Compare ``model`` (an ONNX path or ModelProto, or a compiled ``.so``) built with
    ``options`` (the CompileConfig fields, as for mcc.compile) with the fp32 reference,
    layer by layer.

    ``inputs``: {input name: array}, an .npz path keyed by input name, or None for seeded
    random inputs (``seed``). ``reference``: "ort" (ONNX Runtime fp32) or "fp32" (mcc's
    own build without quantize / precision options). ``layers``: op types, node or tensor
    names to compare (default: every activation). A ``.so`` compares its outputs with
    ONNX Runtime on ``reference_model`` (default: the model it was built from)."""
    if reference not in REFERENCES:
        raise MccError(f"unknown reference '{reference}'; choose one of {', '.join(REFERENCES)}")
    given = [k for k in _VERIFY if options.get(k) is not None]
    if given:
        raise MccError(f"{given[0]}: compare runs no verification; give the inputs as "
                       "inputs= (--inputs)")
    say = progress or (lambda line: None)
    start = time.perf_counter()
    if isinstance(model, (str, Path)) and str(model).endswith(".so"):
        misplaced = [k for k in _given(options) if k != "seed"] + [
            name for name, value in (("target", target), ("input_shapes", input_shapes),
                                     ("layers", layers), ("reference", reference != "ort"))
            if value]
        if misplaced:
            raise MccError(f"'{model}' is a compiled module: {misplaced[0]} applies to an ONNX "
                           "model only (a .so compares its outputs against --reference-model)")
        report = _compare_module(Path(model), inputs, reference_model, threshold,
                                 options.get("seed") or 0, say)
    else:
        if reference_model is not None:
            raise MccError("reference_model (--reference-model) is for a compiled .so; an "
                           "ONNX model is its own reference")
        report = _compare_onnx(model, inputs, reference, tuple(layers), threshold, target,
                               input_shapes, options, _without_output_lines(progress), say)
    report.seconds = time.perf_counter() - start
    return report


def _compare_onnx(path, inputs, reference, select, threshold, target, input_shapes, options,
                  progress, say) -> CompareReport:
    import mcc
    from mcc.frontends.onnx_import import _load, ort_reference

    if isinstance(path, (str, Path)):
        if not str(path).lower().endswith(".onnx"):
            raise MccError(f"cannot compare '{path}': expected an ONNX model (.onnx) or a "
                           "compiled module (.so)")
        path = Path(path)
    proto, label, _ = _load(path)  # a path or an onnx.ModelProto
    config = mcc.compile_config(target, input_shapes, verify=False, **options)
    if not config.target.runs_on_host():
        raise MccError(f"compare runs the module here, and a {config.target.name} module "
                       f"cannot run on this machine: {config.target.why_not_runnable()}")
    shown = options
    if config.bind:  # bound before marking, so that ONNX Runtime runs the same graph
        from mcc.frontends.onnx_import import bind_inputs

        proto = bind_inputs(proto, config.bind, label)
        options = {k: v for k, v in options.items() if k != "bind"}
    feed = _read_feed(inputs, label, _graph_input_names(proto))
    marked = mark_layers(proto, select)
    notes = [f"{len(marked.layers)} of {marked.candidates} activations compared"
             + (f" (--layers {' '.join(select)})" if select else "")
             + (f"; {marked.untyped} of unknown type left out" if marked.untyped else "")]
    say(f"[mcc] compare  {notes[0]}: marked as graph outputs, compiling the marked model")
    if not select and len(marked.layers) > MANY_LAYERS:
        say(f"[mcc] compare  {len(marked.layers)} tensors marked: --layers OP,NODE,... marks "
            "fewer (a shorter report, a build closer to the unmarked one)")
    compiled = _compile(mcc, marked.model, label, target, input_shapes, options, progress)
    feed, feed_text = _feed_or_random(feed, inputs, compiled, config.seed, say)
    actual = compiled.run(feed)
    names = [layer.tensor for layer in marked.layers]
    if reference == "ort":
        say("[mcc] compare  running ONNX Runtime fp32 on the marked model")
        run_ort = ort_reference(marked.model.SerializeToString(), names)
        expected = _run_reference(run_ort, feed, label)
        reference_name = "onnxruntime fp32"
    else:
        fp32 = {k: v for k, v in options.items() if k not in _LOW_PRECISION}
        say("[mcc] compare  compiling the marked model in fp32 (the reference)")
        expected = _compile(mcc, marked.model, label, target, input_shapes, fp32,
                            progress).run(feed)
        reference_name = "mcc fp32"
    diffs = diff_layers(marked.layers, actual, expected)
    missing = [n for n in names if n not in actual or n not in expected]
    if missing:
        notes.append(f"{len(missing)} marked tensor(s) not returned, e.g. '{missing[0]}'")
    quant = compiled.metadata.get("quantization") or {}
    if "int8_ops" in quant:
        notes.append(f"the marked build runs {len(quant['int8_ops'])} conv2d/matmul ops in int8 "
                     f"and {len(quant.get('fp32_ops', {}))} in fp32 (marking can change this: "
                     "compare with `mcc info` of your module)")
    return CompareReport(label, reference_name, _build_text(shown, config), feed_text, diffs,
                         threshold, per_layer=True, notes=notes)


def _without_output_lines(progress):
    """The compile's progress without the int8 accuracy report's table ("[mcc] accuracy vs
    fp32 ...", then "[mcc]   name: cosine ..." per output): in the marked build every layer
    is an output, and the comparison gives those figures against the reference anyway."""
    if progress is None:
        return None
    table = ("[mcc]   ", "[mcc] accuracy vs fp32")
    return lambda line: None if line.startswith(table) else progress(line)


def _compile(mcc, proto, label, target, input_shapes, options, progress):
    """mcc.compile of the marked proto, its errors naming the user's file."""
    try:
        return mcc.compile(proto, target=target, input_shapes=input_shapes, progress=progress,
                           verify=False, **options)
    except MccError as err:
        raise MccError(str(err).replace(_IN_MEMORY, label)) from None


def _compare_module(path: Path, inputs, reference_model, threshold, seed, say) -> CompareReport:
    import mcc
    from mcc.frontends.references import reference_for

    module = mcc.load(path)
    source = (module.metadata.get("source") or {})
    ref_path = reference_model or source.get("path")
    if ref_path is None or not Path(ref_path).is_file():
        where = f" (it was built from '{source['path']}', which is not there)" \
            if source.get("path") and reference_model is None else ""
        raise MccError(f"'{path}': no reference model{where}; pass --reference-model MODEL.onnx"
                       if reference_model is None else f"reference model '{ref_path}' not found")
    notes = ["a compiled module keeps no intermediate tensors: only its outputs are compared "
             "(compare the ONNX model for per-layer figures)"]
    outputs = [t.name for t in module.outputs]
    if str(ref_path).lower().endswith(".onnx"):
        notes += _check_same_model(path, module, Path(ref_path), source)
    given = _read_feed(inputs, str(path), [t.name for t in module.inputs])
    feed, feed_text = _feed_or_random(given, inputs, module, seed, say)
    actual = module.run(feed)
    ref_name, run_reference = reference_for(ref_path, outputs)
    expected = _run_reference(run_reference, feed, str(ref_path))
    layers = [Layer(i, name, name, "output", ("",)) for i, name in enumerate(outputs)]
    target = module.metadata["target"]["name"]
    quant = (module.metadata.get("quantization") or {}).get("mode")
    precision = (module.metadata.get("precision") or {}).get("mode")
    build = ", ".join(x for x in (f"target {target}", quant, precision) if x)
    return CompareReport(str(path), f"{ref_name} fp32 on '{ref_path}'", build, feed_text,
                         diff_layers(layers, actual, expected), threshold, per_layer=False,
                         notes=notes)


def _check_same_model(so_path: Path, module, ref_path: Path, source: dict) -> list[str]:
    """One-line errors when the reference ONNX model's inputs / outputs are not the
    module's; a note when it is another file than the module's source."""
    import hashlib

    from mcc.frontends.onnx_import import _load

    proto, label, raw = _load(ref_path)
    inits = {i.name for i in proto.graph.initializer}
    ref_inputs = [vi.name for vi in proto.graph.input if vi.name not in inits]
    ref_outputs = [o.name for o in proto.graph.output]
    mine = [t.name for t in module.inputs]
    if sorted(ref_inputs) != sorted(mine):
        raise MccError(f"'{label}' has inputs {', '.join(ref_inputs)} but '{so_path}' takes "
                       f"{', '.join(mine)}: not the model it was built from (or built with "
                       "--bind)")
    lost = [t.name for t in module.outputs if t.name not in ref_outputs]
    if lost:
        raise MccError(f"'{label}' has no output '{lost[0]}' of '{so_path}' (its outputs: "
                       f"{', '.join(ref_outputs)}): not the model it was built from")
    if source.get("sha256") and hashlib.sha256(raw).hexdigest() != source["sha256"]:
        return [f"'{label}' is not the file '{so_path}' was built from (another sha256); "
                "its inputs and outputs match"]
    return []


def _graph_input_names(proto) -> list[str]:
    inits = {i.name for i in proto.graph.initializer}
    return [vi.name for vi in proto.graph.input if vi.name not in inits]


def _read_feed(inputs, label: str, names: list[str]):
    """The user's feed (a dict, or an .npz path read now, before minutes of compiling),
    its names checked against the model's inputs; None for a random feed."""
    if inputs is None:
        return None
    if isinstance(inputs, (str, Path)):
        from mcc.runtime.tensors import read_npz

        inputs = read_npz(inputs)
    if not isinstance(inputs, dict):
        raise MccError(f"inputs must be a dict of input name to array or an .npz path, got "
                       f"{type(inputs).__name__}")
    unknown = [k for k in inputs if k not in names]
    if unknown:
        raise MccError(f"inputs: '{unknown[0]}' is not an input of '{label}' (its inputs: "
                       f"{', '.join(names)})")
    missing = [n for n in names if n not in inputs]
    if missing:
        raise MccError(f"inputs: no array for input '{missing[0]}' of '{label}'")
    return inputs


def _feed_or_random(feed, inputs, module, seed: int, say):
    """(feed, where it came from): the user's, or seeded random inputs in the module's
    value ranges (said on the progress lines, as `mcc run` does)."""
    if feed is not None:
        return feed, f"'{inputs}'" if isinstance(inputs, (str, Path)) else "the given inputs"
    from mcc.frontends.feeds import module_rules
    from mcc.runtime.tensors import random_inputs

    say(f"[mcc] no --inputs given: comparing on seeded random inputs (seed {seed})")
    return (random_inputs(module.inputs, seed=seed, rules=module_rules(module.metadata)),
            f"seeded random inputs (seed {seed})")


def _run_reference(run, feed: dict, label: str) -> dict:
    """The reference's outputs; its failure is one line naming the model."""
    try:
        return run(feed)
    except MccError:
        raise
    except Exception as err:  # noqa: BLE001 - the runtime's own error, shortened
        raise MccError(f"the reference runtime failed on '{label}': {first_line(err)}") from None


def _given(options: dict) -> list[str]:
    """The options given a value (None, empty: the default; the CLI passes only the flags
    on its command line)."""
    return [name for name, value in options.items() if value not in (None, (), {})]


def _build_text(options: dict, config) -> str:
    """The options that differ from their defaults, e.g. "quantize int8, layout NHWC"."""
    parts = [f"target {config.target.name}"]
    for name in _given(options):
        value = options[name]
        parts.append(f"{name} {','.join(map(str, value)) if isinstance(value, tuple) else value}")
    return ", ".join(parts)
