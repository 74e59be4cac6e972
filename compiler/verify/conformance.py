"""ONNX backend node tests against mcc: run one case, classify it, write the support table.

The cases come from the installed ``onnx`` package (``onnx.backend.test``), the
same ones ONNX's backend scoreboard counts. Each is compiled with
:class:`mcc.verify.onnx_backend.MccBackend` and its outputs are compared with
ONNX's reference data using the runner's own check (``assert_similar_outputs``:
shape, dtype, then ``assert_allclose`` with the case's rtol/atol).

Outcome per case: ``pass``; ``fail`` with a one-line reason (where it stopped:
import, compile or a wrong result); or ``skip`` where the case needs what a
compiled tensor program cannot hold (string tensors) or is a training op.
"""

from __future__ import annotations

import re
import time
import traceback
from dataclasses import asdict, dataclass
from functools import cache

import numpy as np

SKIP_DOMAINS = {"ai.onnx.preview.training": "training op (ai.onnx.preview.training), not inference"}


@dataclass
class CaseResult:
    name: str
    op: str
    status: str  # pass | fail | skip
    reason: str = ""
    seconds: float = 0.0
    specialized: bool = False  # passed with shape-operand inputs bound at compile time

    def to_json(self) -> dict:
        return asdict(self)


def node_cases() -> dict:
    """Name -> onnx.backend.test TestCase of every node test in the installed onnx."""
    from onnx.backend.test.loader import load_model_tests

    return {case.name: case for case in load_model_tests(kind="node")}


@cache
def _snake_ops() -> list[tuple[str, str]]:
    """(snake_case name, op type) of every ONNX op, longest first, for naming tests."""
    import onnx.defs

    names = {schema.name for schema in onnx.defs.get_all_schemas_with_history()}
    snake = {re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", n).lower(): n
             for n in names}
    return sorted(snake.items(), key=lambda kv: -len(kv[0]))


def op_of(case) -> str:
    """The op a test exercises: a single node's type, else matched from the test name."""
    nodes = [n for n in case.model.graph.node if n.op_type != "Constant"] or \
        list(case.model.graph.node)
    if len(nodes) == 1:
        return nodes[0].op_type
    stem = case.name.removeprefix("test_")
    for snake, op in _snake_ops():
        if stem == snake or stem.startswith(snake + "_"):
            return op
    return nodes[0].op_type if nodes else "?"


def _skip_reason(case) -> str | None:
    model = case.model
    for node in model.graph.node:
        if node.domain in SKIP_DOMAINS:
            return SKIP_DOMAINS[node.domain]
    import onnx

    for vi in list(model.graph.input) + list(model.graph.output):
        elem = vi.type.tensor_type.elem_type
        if vi.type.HasField("tensor_type") and elem == onnx.TensorProto.STRING:
            return "string tensors (TVM has no string dtype)"
    return None


def _short(text: str, limit: int = 160) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _mismatch_reason(expected, actual, rtol, atol) -> str:
    """A one-line account of how outputs differ (the runner's message is multi-line)."""
    if len(expected) != len(actual):
        return f"wrong result: {len(actual)} outputs, expected {len(expected)}"
    for i, (ref, out) in enumerate(zip(expected, actual)):
        if isinstance(ref, list):
            if not isinstance(out, list) or len(out) != len(ref):
                return f"wrong result: output {i} should be a sequence of {len(ref)}"
            continue
        out = np.asarray(out)
        if out.shape != ref.shape:
            return f"wrong result: output {i} has shape {out.shape}, expected {ref.shape}"
        if out.dtype != ref.dtype:
            return f"wrong result: output {i} has dtype {out.dtype}, expected {ref.dtype}"
        if ref.dtype != object:
            with np.errstate(all="ignore"):
                err = np.abs(out.astype(np.float64) - ref.astype(np.float64))
                err = np.nan_to_num(err, nan=np.inf)
            if np.any(err > atol + rtol * np.abs(ref.astype(np.float64))):
                return (f"wrong result: output {i} max abs error {float(err.max()):.3g} "
                        f"(rtol {rtol:g}, atol {atol:g})")
    return "wrong result (sequence elements differ)"


def _failure_reason(err: BaseException) -> str:
    from mcc.errors import MccError, first_line

    if isinstance(err, MccError):
        text = str(err)
        text = re.sub(r" in '<in-memory ONNX model>'", "", text)
        return _short(text.replace("cannot import '<in-memory ONNX model>': ", "import: "))
    frames = traceback.extract_tb(err.__traceback__)
    where = "run" if any(f.name == "run" and ("onnx_backend" in f.filename
                                              or f.filename.endswith("runtime.py"))
                         for f in frames) else "compile"
    return _short(f"{where}: {type(err).__name__}: {first_line(err)}")


def run_case(case) -> CaseResult:
    """Compile and run one node test with mcc; compare with ONNX's reference outputs."""
    from onnx.backend.test.runner import Runner, _normalize_tensor

    from mcc.verify.onnx_backend import MccBackend

    start = time.perf_counter()
    op = op_of(case)
    skip = _skip_reason(case)
    if skip:
        return CaseResult(case.name, op, "skip", skip)
    try:
        rep = MccBackend.prepare(case.model, "CPU")
        for inputs, ref_outputs in case.data_sets:
            feed = [_normalize_tensor(x) for x in inputs]
            expected = [_normalize_tensor(x) for x in ref_outputs]
            actual = rep.run(feed)
            try:
                Runner.assert_similar_outputs(expected, actual, rtol=case.rtol, atol=case.atol)
            except (AssertionError, TypeError, ValueError, IndexError):
                return CaseResult(case.name, op, "fail",
                                  _mismatch_reason(expected, actual, case.rtol, case.atol),
                                  time.perf_counter() - start)
    except Exception as err:  # any import/build/run failure is this case's result
        return CaseResult(case.name, op, "fail", _failure_reason(err),
                          time.perf_counter() - start)
    return CaseResult(case.name, op, "pass", "", time.perf_counter() - start, rep.specialized)


def run_case_api(case, workdir) -> CaseResult:
    """One node test through the public API, as a user would run it: the model saved to a
    file, ``mcc.compile(path, input_shapes=<the test's input shapes>, bind=<the inputs the
    conformance backend binds: shape operands>, verify=True)``, then ``.run(feed)`` on each
    data set, compared with ONNX's reference outputs by the runner's own check. Where
    verification on synthetic inputs fails with advice to pass real ones
    (``--verify-inputs``), it compiles again verifying on the test's inputs."""
    from pathlib import Path

    import onnx
    from onnx.backend.test.runner import Runner, _normalize_tensor

    import mcc
    from mcc.runtime.tensors import to_storage
    from mcc.verify.onnx_backend import shape_operand_inputs

    start = time.perf_counter()
    op = op_of(case)
    skip = _skip_reason(case)
    if skip:
        return CaseResult(case.name, op, "skip", skip)
    path = Path(workdir) / f"{case.name}.onnx"
    onnx.save(case.model, str(path))
    initializers = {init.name for init in case.model.graph.initializer}
    names = [vi.name for vi in case.model.graph.input if vi.name not in initializers]
    outputs = [o.name for o in case.model.graph.output]
    operands = shape_operand_inputs(case.model)
    try:
        compiled = None
        for inputs, ref_outputs in case.data_sets:
            feed = dict(zip(names, (_normalize_tensor(x) for x in inputs)))
            bind = {name: feed.pop(name) for name in operands if name in feed}
            if compiled is None:
                shapes = {k: v.shape for k, v in feed.items() if isinstance(v, np.ndarray)}
                try:
                    compiled = mcc.compile(str(path), input_shapes=shapes, bind=bind or None,
                                           verify=True)
                except mcc.MccError as err:
                    if "--verify-inputs" not in str(err):
                        raise
                    # what the error tells a user: verify on real inputs, the test's
                    feed_file = Path(workdir) / f"{case.name}.npz"
                    np.savez(feed_file, **{k: to_storage(v) for k, v in feed.items()})
                    compiled = mcc.compile(str(path), input_shapes=shapes, bind=bind or None,
                                           verify=True, verify_inputs=feed_file)
            expected = [_normalize_tensor(x) for x in ref_outputs]
            result = compiled.run(feed)
            actual = [result[name] for name in outputs]
            try:
                Runner.assert_similar_outputs(expected, actual, rtol=case.rtol, atol=case.atol)
            except (AssertionError, TypeError, ValueError, IndexError):
                return CaseResult(case.name, op, "fail",
                                  _mismatch_reason(expected, actual, case.rtol, case.atol),
                                  time.perf_counter() - start, bool(operands))
    except Exception as err:  # any import/build/verify/run failure is this case's result
        reason = re.sub(r"/\S*mcc-api-tests-[^/]*/\S*?(?='|$)", "<model>",
                        _failure_reason(err))
        return CaseResult(case.name, op, "fail", reason, time.perf_counter() - start,
                          bool(operands))
    return CaseResult(case.name, op, "pass", "", time.perf_counter() - start, bool(operands))
