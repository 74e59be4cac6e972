"""mcc's own Relax graph passes, one capability per module.

Each module has one public entry point ``IRModule -> IRModule``; the build
driver runs the ones a compile asks for, in the order documented in
``mcc.build.pipeline``.
"""

from mcc.passes.calibrate import calibrate
from mcc.passes.channel_permutation import ChannelPermutation, channel_permutation
from mcc.passes.conv1d_as_conv2d import Conv1dAsConv2d, conv1d_as_conv2d
from mcc.passes.conv_transpose_as_matmul import ConvTransposeAsMatmul, conv_transpose_as_matmul
from mcc.passes.dataflow_blocks import DataflowBlocks, dataflow_blocks
from mcc.passes.fast_math import FastMath, fast_math
from mcc.passes.fold_batch_norm import FoldBatchNorm, fold_batch_norm
from mcc.passes.fold_constant_shapes import FoldConstantShapes, fold_constant_shapes
from mcc.passes.layout import ConvertLayout, convert_layout
from mcc.passes.legalize_dynamic_slice import LegalizeDynamicSlice, legalize_dynamic_slice
from mcc.passes.model_cost import model_cost
from mcc.passes.op_count import count_ops
from mcc.passes.order_symbolic_bindings import OrderSymbolicBindings, order_symbolic_bindings
from mcc.passes.pad_channels import PadChannels, pad_channels
from mcc.passes.prune_channels import prune_channels
from mcc.passes.quantize import quantize
from mcc.passes.side_inputs_apart import SideInputsApart, side_inputs_apart
from mcc.passes.split_grouped_conv import SplitGroupedConv, split_grouped_conv
from mcc.passes.winograd import Winograd, winograd

__all__ = ["ChannelPermutation", "Conv1dAsConv2d", "ConvTransposeAsMatmul", "ConvertLayout",
           "DataflowBlocks", "FastMath", "FoldBatchNorm", "FoldConstantShapes",
           "LegalizeDynamicSlice", "OrderSymbolicBindings", "PadChannels", "SideInputsApart",
           "SplitGroupedConv", "Winograd", "calibrate", "channel_permutation",
           "conv1d_as_conv2d", "conv_transpose_as_matmul", "convert_layout", "count_ops",
           "dataflow_blocks", "fast_math", "fold_batch_norm", "fold_constant_shapes",
           "legalize_dynamic_slice", "model_cost", "order_symbolic_bindings", "pad_channels",
           "prune_channels", "quantize", "side_inputs_apart", "split_grouped_conv",
           "winograd"]
