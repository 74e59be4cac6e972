"""Put runs of pure bindings that sit outside any dataflow block into dataflow blocks.

TVM's ONNX importer emits a graph holding an ``If`` with no dataflow block at all, and
FuseOps (like every dataflow-only rewrite) skips bindings outside one: openWakeWord's
wake-word head ran each op of its dense layers and layer norms as its own kernel (55
kernel calls where 20 do, 1.6x ONNX Runtime). TVM's ``ConvertToDataflow`` wraps each
run of pure bindings in a block.

Functions that call another Relax function (the recursion mcc emits for ONNX ``Loop``)
are left as they are: FuseOps cannot place the arguments of such a call in a dataflow
block ("Variable ... could not be found in any group").
"""

from __future__ import annotations

import tvm
from tvm import relax


def dataflow_blocks(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with its pure bindings in dataflow blocks (see the module docstring)."""
    return DataflowBlocks()(mod)


@relax.transform.function_pass(opt_level=0, name="mcc.DataflowBlocks")
class DataflowBlocks:
    """Function pass form, for use inside a ``tvm.transform.Sequential``."""

    def transform_function(self, func, mod, ctx):
        if _calls_relax_function(func, mod):
            return func
        single = tvm.IRModule({"f": func})
        return relax.transform.ConvertToDataflow()(single)["f"]


def _calls_relax_function(func, mod) -> bool:
    found = []

    def visit(expr):
        if (isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.GlobalVar)
                and isinstance(mod[expr.op], relax.Function)):
            found.append(expr)

    relax.analysis.post_order_visit(func.body, visit)
    return bool(found)
