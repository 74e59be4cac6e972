"""ONNX's quantized operators, which TVM's importer lacks or runs slowly: QLinearConv,
QLinearMatMul, ConvInteger, MatMulInteger.

Each becomes the explicit QDQ form (``dequantize -> fp32 op -> quantize``); mcc's quantize
step then recognises every conv / matmul fed by a single-scale ``dequantize`` and runs it
as an int8 kernel with the model's own scales (mcc.passes.quantize, "qdq" mode), so the
arithmetic is int8 x int8 -> int32 as the model intends, not dequantised fp32.

Importing this module registers the converters with mcc's converter registry
(mcc.frontends.onnx_ops), which lays them over TVM's table while mcc imports a model.
"""

from __future__ import annotations


def _conv_attrs(attr: dict, kernel_rank: int, op: str) -> dict:
    auto_pad = attr.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad not in ("NOTSET", "VALID"):
        raise ValueError(f"{op} with auto_pad={auto_pad} is not supported; give explicit pads")
    if kernel_rank != 2:
        raise ValueError(f"{op}: only 2-D convolutions are supported (kernel rank {kernel_rank})")
    pads = list(attr.get("pads", [0, 0, 0, 0])) if auto_pad == "NOTSET" else [0, 0, 0, 0]
    return {"strides": list(attr.get("strides", [1, 1])), "padding": pads,
            "dilation": list(attr.get("dilations", [1, 1])), "groups": int(attr.get("group", 1))}


def _dequantize(bb, x, scale, zero_point, axis=-1):
    from tvm import relax

    if zero_point is None:
        zero_point = relax.const(0, str(x.ty.dtype))
    return bb.emit(relax.op.dequantize(x, scale, zero_point, axis=axis, out_dtype="float32"))


def _unit_dequantize(bb, x, zero_point, axis: int = -1):
    """``x - zero_point`` as float32 (a dequantize with scale 1); a zero point per channel
    (a 1-D one with several values) along ``axis``."""
    from tvm import relax

    one = relax.const(1.0, "float32")
    if zero_point is not None and zero_point.ty.ndim == 1 and int(zero_point.ty.shape[0]) > 1:
        ones = bb.emit(relax.op.full_like(relax.op.astype(zero_point, "float32"), one))
        return _dequantize(bb, x, ones, zero_point, axis=axis)
    return _dequantize(bb, x, one, zero_point)


def _int8_matmul(bb, a, b, a_zero, b_zero):
    """MatMulInteger ``(a - az) @ (b - bz)`` of a uint8 activation (its zero point known
    only at run time, as DynamicQuantizeLinear gives it) by a constant weight, in mcc's
    u8 x s8 -> s32 kernel (mcc.passes.int8_kernels; AVX-512 VNNI where the CPU has it),
    exactly in integers. The weight is stored as ``w - c`` with c = 128 for uint8 weights
    (0 for int8), which fits int8 whatever ``bz`` is, and

        (a - az) @ (b - bz) = a @ (b - c) - az * colsum(b - c) + (c - bz) * rowsum(a - az)

    the second term is the kernel's per-column bias, the third a per-row int32 term (both
    computed at run time from az). None where this does not apply (a weight computed at
    run time, a zero point per column, int8 activations, a shape not static): the caller
    then uses the float form."""
    import numpy as np
    import tvm
    from tvm import relax

    from mcc.passes.int8_kernels import QConvShape, pack_weight, qconv2d_func
    from mcc.passes.shapes import static_shape

    const = tvm.ir.GenericConst
    if not isinstance(b, const) or b.ty.ndim != 2 or str(a.ty.dtype) != "uint8":
        return None
    weight = b.value.numpy()
    if weight.dtype not in (np.uint8, np.int8):
        return None
    if b_zero is None:
        bz = 0
    elif isinstance(b_zero, const) and b_zero.value.numpy().size == 1:
        bz = int(b_zero.value.numpy().reshape(-1)[0])
    else:
        return None
    if a_zero is not None and str(a_zero.ty.dtype) != "uint8":
        return None
    dims = static_shape(a)
    if dims is None or len(dims) < 1:
        return None
    k, n_out = (int(d) for d in weight.shape)
    rows = int(np.prod(dims[:-1])) if len(dims) > 1 else 1
    offset = 128 if weight.dtype == np.uint8 else 0
    wq = (weight.astype(np.int32) - offset).astype(np.int8)  # [K, N], exact
    shape = QConvShape(1, 1, rows, k, n_out, 1, 1, (1, 1), (0, 0, 0, 0), 0, "uint8")
    kernel = bb.add_func(qconv2d_func(shape), "mcc_qmatmul")
    column_sum = wq.astype(np.int64).sum(axis=0).astype(np.int32)  # [N]
    if a_zero is None:
        az = relax.const(0, "int32")
    else:
        az = bb.emit(relax.op.astype(relax.op.reshape(a_zero, []), "int32"))
    bias = bb.emit(relax.op.multiply(relax.op.negative(az), relax.const(column_sum)))
    flat = bb.emit(relax.op.reshape(a, [1, 1, rows, k]))
    out = bb.emit(relax.call_tir(
        kernel, [flat, relax.const(pack_weight(wq.T.reshape(n_out, 1, 1, k).copy())), bias,
                 relax.const(np.ones(n_out, np.float32))],
        relax.TensorType([1, 1, rows, n_out], "float32")))
    product = bb.emit(relax.op.astype(relax.op.round(out), "int32"))
    if offset != bz:  # (c - bz) * rowsum(a - az)
        row_sum = relax.op.sum(relax.op.astype(flat, "int32"), axis=[-1], keepdims=True)
        centred = relax.op.subtract(row_sum, relax.op.multiply(az, relax.const(k, "int32")))
        product = bb.emit(relax.op.add(product, relax.op.multiply(
            centred, relax.const(offset - bz, "int32"))))
    return relax.op.reshape(product, [*dims[:-1], n_out])


def _converters():
    from tvm import relax
    from tvm.relax.frontend.onnx.onnx_frontend import OnnxOpConverter

    class QLinearConv(OnnxOpConverter):
        """y = quantize(conv(dequantize(x), dequantize(w, per output channel)) + B*xs*ws)."""

        @classmethod
        def _impl_v10(cls, bb, inputs, attr, params):
            x, xs, xz, w, ws, wz, ys, yz = inputs[:8]
            bias = inputs[8] if len(inputs) > 8 else None
            x_real, w_real = _dequantize(bb, x, xs, xz), _dequantize(bb, w, ws, wz, axis=0)
            conv = bb.emit(relax.op.nn.conv2d(x_real, w_real, **_conv_attrs(
                attr, w.ty.ndim - 2, "QLinearConv")))
            if bias is not None:  # int32 bias in units of xs * ws[o]
                scale = bb.emit(relax.op.multiply(xs, ws))
                real = bb.emit(relax.op.multiply(relax.op.astype(bias, "float32"), scale))
                conv = bb.emit(relax.op.add(conv, relax.op.reshape(real, [1, -1, 1, 1])))
            return relax.op.quantize(conv, ys, yz, axis=1, out_dtype=str(yz.ty.dtype))

    class QLinearMatMul(OnnxOpConverter):
        """y = quantize(dequantize(a) @ dequantize(b, per column))."""

        @classmethod
        def _impl_v10(cls, bb, inputs, attr, params):
            a, a_s, a_z, b, b_s, b_z, ys, yz = inputs[:8]
            product = bb.emit(relax.op.matmul(_dequantize(bb, a, a_s, a_z),
                                     _dequantize(bb, b, b_s, b_z, axis=-1)))
            return relax.op.quantize(product, ys, yz, axis=-1, out_dtype=str(yz.ty.dtype))

    class ConvInteger(OnnxOpConverter):
        """int32 y = conv(x - x_zero_point, w - w_zero_point): a QDQ conv with unit scales."""

        @classmethod
        def _impl_v10(cls, bb, inputs, attr, params):
            x, w = inputs[0], inputs[1]
            xz = inputs[2] if len(inputs) > 2 else None
            wz = inputs[3] if len(inputs) > 3 else None
            conv = relax.op.nn.conv2d(_unit_dequantize(bb, x, xz), _unit_dequantize(bb, w, wz, 0),
                                      **_conv_attrs(attr, w.ty.ndim - 2, "ConvInteger"))
            return relax.op.astype(relax.op.round(conv), "int32")

    class MatMulInteger(OnnxOpConverter):
        """int32 y = (a - a_zero_point) @ (b - b_zero_point): a QDQ matmul with unit scales
        (TVM's converter is an int32 matmul that no int8 or float schedule takes: 1 GFLOP/s
        on an 8210-class OCR head)."""

        @classmethod
        def _impl_v10(cls, bb, inputs, attr, params):
            a, b = inputs[0], inputs[1]
            az = inputs[2] if len(inputs) > 2 else None
            bz = inputs[3] if len(inputs) > 3 else None
            exact = _int8_matmul(bb, a, b, az, bz)
            if exact is not None:
                return exact
            product = relax.op.matmul(_unit_dequantize(bb, a, az), _unit_dequantize(bb, b, bz, -1))
            return relax.op.astype(relax.op.round(product), "int32")

    return {"QLinearConv": QLinearConv, "QLinearMatMul": QLinearMatMul,
            "ConvInteger": ConvInteger, "MatMulInteger": MatMulInteger}


def _register_all() -> None:
    from mcc.frontends.onnx_ops import register

    for op_type, converter in _converters().items():
        register(op_type, converter)


_register_all()
