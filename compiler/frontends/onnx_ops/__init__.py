"""mcc's own ONNX op converters, added to TVM's Relax ONNX importer without forking it.

TVM's importer looks every op up in ``onnx_frontend._get_convert_map()``. While
:func:`extended_convert_map` is active, that lookup returns TVM's map updated with
the converters registered here, so an op mcc adds (or fixes) is used by the
importer, by its unsupported-op check and inside ``If`` branches alike.

Registering a converter (any module, e.g. the int8 ops)::

    from mcc.frontends.onnx_ops import register
    from tvm.relax.frontend.onnx.onnx_frontend import OnnxOpConverter

    @register("QLinearConv")
    class QLinearConv(OnnxOpConverter):
        @classmethod
        def _impl_v10(cls, bb, inputs, attr, params):
            ...  # return a relax.Expr (or a relax.Tuple for several outputs)

The converter classes follow TVM's convention: ``_impl_v<N>`` per opset version,
``bb`` a ``relax.BlockBuilder``, ``inputs`` the Relax values (None for an omitted
optional input), ``attr`` the node's attributes. Modules that register converters
are listed in ``_CONVERTER_MODULES`` so importing mcc's frontend loads them.
"""

from __future__ import annotations

import contextlib
import importlib
import threading

_REGISTRY: dict[str, type] = {}
_LOCK = threading.RLock()

# Modules whose import registers converters (loaded once, on first use).
_CONVERTER_MODULES: tuple[str, ...] = (
    "mcc.frontends.onnx_ops.normalization",
    "mcc.frontends.onnx_ops.losses",
    "mcc.frontends.onnx_ops.attention",
    "mcc.frontends.onnx_ops.rnn",
    "mcc.frontends.onnx_ops.elementwise",
    "mcc.frontends.onnx_ops.control_flow",
    "mcc.frontends.onnx_ops.loop",  # Loop as a recursive Relax function
    "mcc.frontends.onnx_ops.reduce",  # ReduceMax/Min: -inf/+inf like ONNX
    "mcc.frontends.onnx_ops.low_precision",  # Cast/CastLike: float8 bit-exact, int4/int2
    "mcc.frontends.onnx_ops.bitcast",
    "mcc.frontends.onnx_ops.runtime_axis",  # CumSum/CumProd with a run-time axis
    "mcc.frontends.onnx_ops.quantized",  # QLinearConv, QLinearMatMul, ConvInteger (int8)
    "mcc.frontends.onnx_ops.contrib",  # com.microsoft: FusedMatMul, Gelu, SkipLayerNorm...
    "mcc.frontends.onnx_ops.integer_division",  # integer Div/Mod: no SIGFPE on 0 or -1
    "mcc.frontends.onnx_ops.range",  # Range(0, seq): an arange of length seq, not range_len_0
    "mcc.frontends.onnx_ops.newer_forms",  # SpaceToDepth mode=CRD, TopK on unsigned ints
)
_loaded = False


def register(op_type: str, converter: type | None = None):
    """Register ``converter`` for ``op_type`` (usable as a class decorator)."""

    def add(cls: type) -> type:
        _REGISTRY[op_type] = cls
        return cls

    return add(converter) if converter is not None else add


def registered_ops() -> dict[str, type]:
    """Op type -> converter class of everything mcc adds to TVM's importer."""
    _load_converter_modules()
    return dict(_REGISTRY)


def _load_converter_modules() -> None:
    global _loaded
    if not _loaded:
        for name in _CONVERTER_MODULES:
            importlib.import_module(name)
        _loaded = True


_tvm_get_convert_map = None  # TVM's own lookup, captured before it is first patched


def _tvm_map() -> dict[str, type]:
    global _tvm_get_convert_map
    if _tvm_get_convert_map is None:
        from tvm.relax.frontend.onnx import onnx_frontend

        _tvm_get_convert_map = onnx_frontend._get_convert_map
    return _tvm_get_convert_map()


def convert_map() -> dict[str, type]:
    """TVM's converter map with mcc's converters on top."""
    merged = _tvm_map()
    merged.update(registered_ops())
    return merged


@contextlib.contextmanager
def extended_convert_map():
    """Make TVM's ONNX importer see mcc's converters for the duration of the block."""
    from tvm.relax.frontend.onnx import onnx_frontend

    _tvm_map()
    _load_converter_modules()
    with _LOCK:
        original = onnx_frontend._get_convert_map
        onnx_frontend._get_convert_map = convert_map
        try:
            yield
        finally:
            onnx_frontend._get_convert_map = original
