"""mcc's own Relax graph passes, one capability per module.

Each module has one public entry point ``IRModule -> IRModule``; the build
driver runs the ones a compile asks for, in the order documented in
``mcc.pipeline``.
"""

from mcc.passes.calibrate import calibrate
from mcc.passes.fold_batch_norm import FoldBatchNorm, fold_batch_norm
from mcc.passes.op_count import count_ops
from mcc.passes.quantize import quantize

__all__ = ["FoldBatchNorm", "calibrate", "count_ops", "fold_batch_norm", "quantize"]
