"""Load pickled numpy arrays without letting the file run code.

A pickle names the callables that rebuild its objects (`os.system` is as valid as `numpy.ndarray`),
and `pickle.load` calls them. `RestrictedUnpickler.find_class` is the single place where the file's
requests are resolved, so allowing only numpy's array-reconstruction functions there means a crafted
`__reduce__` gets refused before anything runs. Object arrays are refused too: their elements would be
arbitrary Python objects, which image data never needs.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError

# numpy 2 moved numpy.core -> numpy._core; pickles written by either version name one of these.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),  # protocol 5 (out-of-band buffer) arrays
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    # protocols 0-2 have no bytes opcode: Python 3 writes an array's raw buffer as
    # _codecs.encode(text, "latin1"). Only that codec is let through (see _latin1_bytes).
    ("_codecs", "encode"),
}
_LATIN1 = {"latin1", "latin-1", "iso-8859-1", "iso8859-1"}


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asked for a global outside the allow-list."""


def _safe_dtype(*args: Any, **kwargs: Any) -> np.dtype:
    """np.dtype, minus object dtypes (which would make the array hold arbitrary objects)."""
    dt = np.dtype(*args, **kwargs)
    if dt.hasobject:
        raise UnsafePickleError("numpy object dtype")
    return dt


def _latin1_bytes(text: str, encoding: str = "utf-8") -> bytes:
    """_codecs.encode, restricted to the one codec pickle itself uses for bytes."""
    if not isinstance(text, str) or encoding.lower() not in _LATIN1:
        raise UnsafePickleError(f"_codecs.encode with {encoding!r}")
    return text.encode("latin1")


def _safe_frombuffer(buf: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    from numpy._core.numeric import _frombuffer

    return _frombuffer(buf, _safe_dtype(dtype), shape, order)


def _resolve(module: str, name: str) -> Any:
    if module == "_codecs":
        return _latin1_bytes
    if name == "_frombuffer":
        return _safe_frombuffer
    if name == "dtype":
        return _safe_dtype
    if name == "ndarray":
        return np.ndarray
    # Both spellings resolve to the current numpy's own functions (no import of the
    # deprecated numpy.core shim, which warns under numpy 2).
    from numpy._core import multiarray  # numpy >= 2

    return getattr(multiarray, name)


class RestrictedUnpickler(pickle.Unpickler):
    """pickle.Unpickler (the fast C one) whose globals are limited to numpy array reconstruction."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise UnsafePickleError(f"{module}.{name}")
        return _resolve(module, name)


def load_pickle(path: str | Path) -> Any:
    """Unpickle `path` allowing only plain containers and numpy arrays; DataError otherwise."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            # latin1: how numpy arrays pickled by Python 2 decode (a no-op for Python 3 pickles)
            return RestrictedUnpickler(f, encoding="latin1").load()
    except UnsafePickleError as err:
        raise DataError(
            f"{p}: refused to load: the pickle asks for {err}, which is not numpy array data. "
            "Only numpy array reconstruction is allowed, so nothing in the file was run; "
            "re-create the file from arrays, or check where it came from.") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError,
            ValueError, MemoryError) as err:
        raise DataError(f"{p}: not a readable pickle of numpy arrays ({type(err).__name__}: {err})") from None
    except OSError as err:
        raise DataError(f"{p}: cannot read ({err.strerror or err})") from None
