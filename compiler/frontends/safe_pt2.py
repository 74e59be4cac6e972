"""Load a ``.pt2`` (torch.export) file without running code from it.

``torch.export.load`` unpickles parts of the archive (sample inputs, weights,
constants) and falls back to ``torch.load(weights_only=False)`` -- an arbitrary
pickle, i.e. arbitrary code -- when the restricted unpickler refuses. Here every
``torch.load`` runs with ``weights_only=True`` (tensors and plain containers only),
and the raw pickle loaders torch uses for custom and opaque objects refuse outright.
A file that needs more is refused with one line.
"""

from __future__ import annotations

import contextlib
import pickle
import threading
import warnings
from pathlib import Path

from mcc.errors import MccError, first_line

_LOCK = threading.Lock()


class UnsafePickle(Exception):
    pass


def _refuse(*_args, **_kwargs):
    raise UnsafePickle("it holds pickled objects that only an unrestricted unpickler could "
                       "load (arbitrary code); mcc loads tensors and plain values only")


@contextlib.contextmanager
def weights_only_loading(torch):
    """Within the block, torch.load is weights_only=True and pickle.loads refuses."""
    from torch.export.pt2_archive import _package

    real_load = torch.load

    def safe_load(*args, **kwargs):
        kwargs["weights_only"] = True
        try:
            return real_load(*args, **kwargs)
        except pickle.UnpicklingError as err:
            lines = [ln.strip() for ln in str(err).splitlines()
                     if "GLOBAL" in ln or "global" in ln.split(" ")[:3]]
            detail = (lines[0] if lines else first_line(err))[:200]
            raise UnsafePickle(f"it holds pickled data that is not plain tensors or values, "
                               f"which could run code ({detail})") from None

    patches = [(torch, "load", safe_load), (pickle, "loads", _refuse),
               (torch._C, "_pickle_load_obj", _refuse)]
    if getattr(_package, "pickle", None) is pickle:
        patches.append((_package, "pickle", type("NoPickle", (), {"loads": staticmethod(_refuse)})))
    with _LOCK:
        saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
        try:
            for obj, name, value in patches:
                setattr(obj, name, value)
            yield
        finally:
            for obj, name, value in saved:
                setattr(obj, name, value)


def load_exported_program(torch, path: str | Path):
    """torch.export.load(path) with no unrestricted unpickling; MccError on refusal."""
    path = Path(path)
    if not path.is_file():
        raise MccError(f"model file '{path}' not found")
    try:
        with warnings.catch_warnings(), weights_only_loading(torch):
            warnings.simplefilter("ignore")
            return torch.export.load(str(path))
    except UnsafePickle as err:
        raise MccError(f"refusing '{path}': {err}") from None
    except MccError:
        raise
    except Exception as err:
        cause = err
        while cause is not None:  # torch may wrap our refusal
            if isinstance(cause, UnsafePickle):
                raise MccError(f"refusing '{path}': {cause}") from None
            cause = cause.__cause__ or cause.__context__
        raise MccError(f"'{path}' is not a valid torch.export program (.pt2): "
                       f"{first_line(err)}") from None
