"""``--bind NAME=V1,V2,...`` / ``mcc.compile(..., bind={name: values})``: graph inputs
frozen to constants before import.

Some models take what a compiler needs at build time (reduce axes, TopK's k,
Resize sizes, Pad pads, Split sizes) as graph *inputs*. Bound to values, each
becomes an initializer of the input's declared dtype, the shape folding sees a
constant, and the input is no longer an input of the compiled module. The
binding itself is ``mcc.frontends.onnx_import.bind_inputs``, which the ONNX
conformance backend uses too.
"""

from __future__ import annotations

import numpy as np

from mcc.errors import MccError


def parse_bind(items) -> dict[str, np.ndarray]:
    """``NAME=V1,V2,...`` options (the CLI's ``--bind``) -> name -> 1-d array (int64 when
    every value is an integer, else float64; cast to the input's dtype at import)."""
    bound = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise MccError(f"--bind '{item}' must look like NAME=V1,V2,... (e.g. k=3 or "
                           "axes=0,2)")
        words = [w.strip() for w in text.split(",")] if text.strip() else []
        try:
            values = np.array([int(w) for w in words], dtype=np.int64)
        except ValueError:
            try:
                values = np.array([float(w) for w in words], dtype=np.float64)
            except ValueError:
                raise MccError(f"--bind '{item}': values must be numbers separated by commas"
                               ) from None
        if name in bound:
            raise MccError(f"--bind names '{name}' twice")
        bound[name] = values
    return bound


def check_bind(bind) -> dict[str, np.ndarray]:
    """The API's ``bind`` (name -> array, list or number) as name -> numpy array."""
    if bind is None:
        return {}
    if not isinstance(bind, dict):
        raise MccError(f"bind must be a dict of input name to values, got {type(bind).__name__}")
    out = {}
    for name, value in bind.items():
        try:
            array = np.asarray(value)
        except (ValueError, TypeError) as err:
            raise MccError(f"bind['{name}']: not an array ({err})") from None
        if array.dtype.kind not in "biuf":
            raise MccError(f"bind['{name}']: values must be numbers, got dtype {array.dtype}")
        out[str(name)] = array
    return out
