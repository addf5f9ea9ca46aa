"""Load pickled numpy arrays without letting the file run code or exhaust memory.

A pickle names the callables that rebuild its objects (`os.system` is as valid as `numpy.ndarray`),
and `pickle.load` calls them. `RestrictedUnpickler.find_class` is the single place where the file's
requests are resolved, so allowing only numpy's array-reconstruction functions there means a crafted
`__reduce__` gets refused before anything runs.

Allowed callables are still dangerous with crafted arguments, so each is wrapped:
- dtypes: only plain numbers (kinds b/i/u/f). A pickle can rewrite a dtype's flags afterwards with
  a BUILD step (making a uint8 dtype claim to hold objects), so arrays and scalars never receive the
  file's dtype object: they get a fresh dtype rebuilt from its type string.
- sizes: `np.ndarray((2**33,))` is a tiny pickle that allocates 8 GiB. Every array is counted against
  a byte budget proportional to the file size before it is allocated, and once more after loading,
  per reference, because the pickle memo lets one array (or list) be referenced many times.
- arrays come out as plain `np.ndarray`; everything else must be a plain container or scalar.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from cnnsweep.errors import DataError

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
_NUMERIC_KINDS = "biuf"  # bool, signed, unsigned, float: all image data and labels need
# Array bytes allowed per byte of file: a real array's data is stored in the file, so 1x plus
# slack for a legitimately shared array; the constant lets tiny files hold small arrays.
BUDGET_FACTOR = 2
BUDGET_SLACK_BYTES = 1 << 20
_PLAIN = (str, bytes, bytearray, int, float, complex, bool, type(None))


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asked for something outside the allow-list (a global, a dtype, a size)."""


def _fresh_dtype(dt: Any) -> np.dtype:
    """A new plain numeric dtype equal to `dt`; refuses object, structured, string and tampered dtypes."""
    if not isinstance(dt, (str, np.dtype)):
        raise UnsafePickleError(f"dtype given as {type(dt).__name__}")
    dt = np.dtype(dt)
    fresh = np.dtype(dt.str)  # rebuilt from the type string: no flags or fields the file could set
    if fresh.kind not in _NUMERIC_KINDS or fresh.fields is not None or fresh.subdtype is not None:
        raise UnsafePickleError(f"numpy dtype {dt.str!r} (only bool/int/uint/float arrays are allowed)")
    if dt.hasobject or dt.flags != fresh.flags or dt.itemsize != fresh.itemsize:
        raise UnsafePickleError("numpy dtype whose flags were rewritten")
    return fresh


class _Budget:
    """Bytes of array data the file may still create."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0

    def take(self, shape: Any, dtype: np.dtype) -> tuple[int, ...]:
        if not isinstance(shape, (tuple, list)) or not all(type(s) is int and s >= 0 for s in shape):
            raise UnsafePickleError(f"array shape {shape!r}")
        nbytes = dtype.itemsize
        for s in shape:
            nbytes *= s  # Python ints: no overflow
        self.used += nbytes
        if self.used > self.limit:
            raise UnsafePickleError(f"arrays larger than the file allows ({self.used:,} > {self.limit:,} bytes)")
        return tuple(shape)


class _Pending(np.ndarray):
    """What reconstruction hands the pickle: its BUILD step lands in this `__setstate__`, which checks
    the state and swaps in a fresh dtype. `_check_tree` turns these into plain ndarrays after loading."""

    _budget: _Budget

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) != 5 or state[0] != 1:
            raise UnsafePickleError("array state of an unknown form")
        version, shape, dtype, fortran, data = state
        dtype = _fresh_dtype(dtype)
        shape = self._budget.take(shape, dtype)
        data = data.encode("latin1") if isinstance(data, str) else data  # Python 2 pickles
        if not isinstance(data, (bytes, bytearray)) or not isinstance(fortran, bool):
            raise UnsafePickleError("array data that is not raw bytes")
        super().__setstate__((version, shape, dtype, fortran, data))


def _latin1_bytes(text: str, encoding: str = "utf-8") -> bytes:
    """_codecs.encode, restricted to the one codec pickle itself uses for bytes."""
    if not isinstance(text, str) or not isinstance(encoding, str) or encoding.lower() not in _LATIN1:
        raise UnsafePickleError(f"_codecs.encode with {encoding!r}")
    return text.encode("latin1")


class RestrictedUnpickler(pickle.Unpickler):
    """pickle.Unpickler (the fast C one) whose globals are limited to numpy array reconstruction,
    each wrapped to check its arguments against `max_bytes` of array data."""

    def __init__(self, file: Any, *, max_bytes: int, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.budget = _Budget(max_bytes)
        self.pending = type("_Pending", (_Pending,), {"_budget": self.budget})

    def _ndarray(self, shape: Any, dtype: Any = float) -> np.ndarray:
        # Only (shape, dtype): buffer/strides arguments could make a huge view of a few bytes.
        dtype = _fresh_dtype(np.dtype(dtype) if dtype is float else dtype)
        return np.ndarray.__new__(self.pending, self.budget.take(shape, dtype), dtype)

    def _reconstruct(self, subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        if subtype != self._ndarray:  # bound methods compare equal, they are not identical
            raise UnsafePickleError("array subclass")
        return self._ndarray(shape, dtype.decode("latin1") if isinstance(dtype, bytes) else dtype)

    def _scalar(self, dtype: Any, data: Any = None) -> np.generic:
        dtype = _fresh_dtype(dtype)
        data = data.encode("latin1") if isinstance(data, str) else data  # Python 2 pickles
        if not isinstance(data, bytes) or len(data) != dtype.itemsize:
            raise UnsafePickleError("numpy scalar without raw bytes")
        return np.frombuffer(data, dtype)[0]

    def _frombuffer(self, buf: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
        dtype = _fresh_dtype(dtype)
        shape = self.budget.take(shape, dtype)
        arr = np.frombuffer(memoryview(buf), dtype).reshape(shape, order="F" if order == "F" else "C")
        return arr.view(self.pending)

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise UnsafePickleError(f"{module}.{name}")
        return {"encode": _latin1_bytes, "dtype": _safe_dtype, "ndarray": self._ndarray,
                "_reconstruct": self._reconstruct, "scalar": self._scalar, "_frombuffer": self._frombuffer}[name]


def _safe_dtype(obj: Any, align: bool = False, copy: bool = False) -> np.dtype:
    """np.dtype for the pickle's own use (a copy, so a BUILD step cannot touch numpy's shared dtypes)."""
    _fresh_dtype(obj)
    return np.dtype(obj, align=bool(align), copy=True)


def _check_tree(obj: Any, budget: _Budget, max_nodes: int) -> Any:
    """The loaded object with every array as a plain ndarray; refuses foreign types, and counts every
    reference (memo reuse included) against the byte budget and `max_nodes`."""
    visits = 0

    def walk(o: Any) -> Any:
        nonlocal visits
        visits += 1
        if visits > max_nodes:
            raise UnsafePickleError(f"more than {max_nodes:,} object references (reused or cyclic objects)")
        if isinstance(o, np.ndarray):
            if not isinstance(o, _Pending):
                raise UnsafePickleError("array not built by numpy reconstruction")
            plain = o.view(np.ndarray)
            _fresh_dtype(plain.dtype)
            budget.take(list(plain.shape), plain.dtype)
            return plain
        if type(o) in _PLAIN or (isinstance(o, np.generic) and o.dtype.kind in _NUMERIC_KINDS):
            return o
        if type(o) is dict:
            return {walk(k): walk(v) for k, v in o.items()}
        if type(o) in (list, tuple, set, frozenset):
            return type(o)(walk(v) for v in o)
        raise UnsafePickleError(f"a {type(o).__name__} object")

    budget.used = 0  # the walk re-counts every array, once per reference
    return walk(obj)


def load_pickle(path: str | Path) -> Any:
    """Unpickle `path` allowing only plain containers and numeric numpy arrays; DataError otherwise.
    Arrays may total at most BUDGET_FACTOR x the file size (+ BUDGET_SLACK_BYTES)."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            max_bytes = BUDGET_FACTOR * size + BUDGET_SLACK_BYTES
            # latin1: how numpy arrays pickled by Python 2 decode (a no-op for Python 3 pickles)
            unpickler = RestrictedUnpickler(f, max_bytes=max_bytes, encoding="latin1")
            obj = unpickler.load()
        return _check_tree(obj, unpickler.budget, max_nodes=size + 1024)
    except UnsafePickleError as err:
        raise DataError(
            f"{p}: refused to load: the pickle asks for {err}, which is not numpy array data. "
            "Only numeric numpy array reconstruction is allowed, so nothing in the file was run; "
            "re-create the file from arrays, or check where it came from.") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError,
            ValueError, KeyError, MemoryError, RecursionError, OverflowError) as err:
        raise DataError(f"{p}: not a readable pickle of numpy arrays ({type(err).__name__}: {err})") from None
    except OSError as err:
        raise DataError(f"{p}: cannot read ({err.strerror or err})") from None
