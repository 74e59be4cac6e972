"""Fold reshapes and transposes of constants in numpy, before ``FoldConstant`` sees them.

Importers wrap every bias in a ``reshape`` and every transposed weight in a
``permute_dims``; layout conversion adds a transpose per convolution weight.
``FoldConstant`` folds them too, but it compiles one TIR kernel with LLVM per
call: 8-12 s of a ResNet-50 compile. Here each is a numpy view, in milliseconds.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax


def fold_constant_shapes(mod: tvm.IRModule) -> tvm.IRModule:
    """Replace ``reshape(const)`` and ``permute_dims(const)`` by their constant results."""
    return FoldConstantShapes()(mod)


@tvm.transform.module_pass(opt_level=0, name="mcc.FoldConstantShapes")
class FoldConstantShapes:
    """Module pass form of :func:`fold_constant_shapes`."""

    def transform_module(self, mod: tvm.IRModule, ctx) -> tvm.IRModule:
        from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard

        data = is_const()
        reshape = is_op("relax.reshape")(data, wildcard())
        permute = is_op("relax.permute_dims")(data)

        def rewrite(expr, matches):
            value = matches[data].value.numpy()
            if expr.op.name == "relax.permute_dims":
                axes = expr.attrs.axes
                axes = None if axes is None else [int(a) for a in axes]
                return relax.const(np.ascontiguousarray(value.transpose(axes)))
            shape = expr.ty.shape
            if shape is None or not all(isinstance(d, tvm.tirx.IntImm) for d in shape):
                return expr
            return relax.const(np.ascontiguousarray(value.reshape([int(d) for d in shape])))

        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                mod[gv] = rewrite_call(reshape | permute, rewrite, func)
        return mod
