"""Sample inputs a user supplies for calibration and accuracy checks (``--calibration DATA``).

Quantization calibrates on them, pruning measures how far outputs moved on
them, and accuracy reports are computed on them, so all three read data the
same way:

* an ``.npz`` whose arrays are keyed by input name, the first axis counting
  samples (for an input of shape ``[1, 3, 32, 32]`` either ``[N, 3, 32, 32]``,
  sliced into N batch-1 samples, or ``[N, 1, 3, 32, 32]``);
* a directory of ``.npz`` files (each as above) and, for a one-input model,
  ``.npy`` files, read in file-name order.

Every sample is checked against the model's input specs, so a wrong name,
shape or dtype is one line naming the file and the input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mcc.errors import MccError
from mcc.runtime.tensors import TensorSpec, check_feed, random_inputs

Sample = dict[str, np.ndarray]


def load_samples(source: str | Path, inputs: list[TensorSpec],
                 max_samples: int | None = None) -> list[Sample]:
    """Read ``source`` (an .npz file or a directory) into a list of input feeds."""
    path = Path(source)
    if not path.exists():
        raise MccError(f"sample data '{path}' not found")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".npz", ".npy"))
        if not files:
            raise MccError(f"sample data directory '{path}' holds no .npz or .npy files")
    elif path.suffix in (".npz", ".npy"):
        files = [path]
    else:
        raise MccError(f"sample data '{path}' must be an .npz file or a directory of "
                       ".npz / .npy files")
    samples: list[Sample] = []
    for file in files:
        samples += _split_samples(file, _read_arrays(file, inputs), inputs)
        if max_samples is not None and len(samples) >= max_samples:
            return samples[:max_samples]
    return samples


def load_verify_feed(source: str | Path, inputs: list[TensorSpec]) -> Sample:
    """One feed from an .npz keyed by input name (``--verify-inputs``): the arrays as they
    are when they fit the inputs (a batch of 2 stays a batch of 2), else the first sample
    of a samples file as :func:`load_samples` reads it."""
    path = Path(source)
    if not path.is_file():
        raise MccError(f"verify inputs '{path}' not found" if not path.exists()
                       else f"verify inputs '{path}' must be an .npz file")
    if path.suffix != ".npz":
        raise MccError(f"verify inputs '{path}' must be an .npz file keyed by input name")
    arrays = _read_arrays(path, inputs)
    try:
        check_feed(inputs, arrays)
        return arrays
    except MccError as err:
        whole = err
    try:
        return _split_samples(path, arrays, inputs)[0]
    except MccError:
        raise MccError(f"verify inputs '{path}': {whole}") from None


def random_samples(inputs: list[TensorSpec], count: int, seed: int = 0,
                   rules: dict | None = None) -> list[Sample]:
    """Seeded random samples, for speed tests only: they calibrate nothing real.
    ``rules``: value ranges of integer inputs (mcc.frontends.feeds), so indices stay in range."""
    return [random_inputs(inputs, seed=seed + i, rules=rules) for i in range(count)]


def _read_arrays(file: Path, inputs: list[TensorSpec]) -> dict[str, np.ndarray]:
    names = [t.name for t in inputs]
    try:
        if file.suffix == ".npy":
            if len(inputs) != 1:
                raise MccError(f"'{file}': an .npy file can only feed a one-input model; this "
                               f"model has inputs {', '.join(names)} (use .npz keyed by name)")
            return {names[0]: np.load(file, allow_pickle=False)}
        with np.load(file, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except MccError:
        raise
    except Exception as err:  # ValueError, EOFError, zipfile.BadZipFile, zlib.error ...
        raise MccError(f"'{file}' is not a readable NumPy file: {err}") from None
    unknown = sorted(set(arrays) - set(names))
    if unknown:
        raise MccError(f"'{file}' has an array '{unknown[0]}' that is not a model input; "
                       f"the model's inputs are: {', '.join(names)}")
    missing = [n for n in names if n not in arrays]
    if missing:
        raise MccError(f"'{file}' has no array for input '{missing[0]}' "
                       f"(it has: {', '.join(sorted(arrays)) or 'nothing'})")
    for spec in inputs:  # .npz keeps bfloat16 / float8 (ml_dtypes) arrays as raw bytes
        array = arrays[spec.name]
        if array.dtype.kind == "V":
            try:
                want = np.dtype(spec.dtype)
            except TypeError:
                continue
            if want.itemsize == array.dtype.itemsize:
                arrays[spec.name] = array.view(want)
    return arrays


def _split_samples(file: Path, arrays: dict[str, np.ndarray],
                   inputs: list[TensorSpec]) -> list[Sample]:
    """Cut each input's array along its first axis into per-sample feeds."""
    counts = set()
    per_input = {}
    for spec in inputs:
        array = arrays[spec.name]
        if array.ndim == len(spec.shape) + 1:  # [N, *shape]
            per_input[spec.name] = [array[i] for i in range(array.shape[0])]
        elif array.ndim == len(spec.shape) and array.ndim > 0:  # [N, ...]: batch-1 samples
            per_input[spec.name] = [array[i:i + 1] for i in range(array.shape[0])]
        else:
            raise MccError(f"'{file}': array '{spec.name}' has shape {list(array.shape)}; "
                           f"expected [samples, ...] for an input of shape {spec.shape_text()}")
        counts.add(len(per_input[spec.name]))
    if len(counts) != 1:
        raise MccError(f"'{file}': inputs hold different numbers of samples "
                       f"({', '.join(f'{k}: {len(v)}' for k, v in per_input.items())})")
    count = counts.pop()
    if count == 0:
        raise MccError(f"'{file}' holds no samples")
    samples = []
    for i in range(count):
        sample = {name: values[i] for name, values in per_input.items()}
        try:
            check_feed(inputs, sample)
        except MccError as err:
            raise MccError(f"'{file}', sample {i}: {err}") from None
        samples.append(sample)
    return samples
