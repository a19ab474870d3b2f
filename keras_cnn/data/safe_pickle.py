"""A pickle reader that builds plain data only, and only so much of it.

The CIFAR-10 python batches and the course's palette file are pickles, and
`pickle.load` runs whatever code a file names. `load` here allows only what
those formats need (dicts, lists, tuples, bytes, str, numbers and numpy
arrays); any other global (``os.system``, ``builtins.eval``...) is refused
with a `UserError` naming the file and the global.

Plain data can still be huge once parsed: a pickle may refer to one object
many times (its memo), so a 126 KB file can describe a list of lists whose
flattened size is billions of elements, which `np.asarray` then tries to
build. So a pickle is also measured, in three steps, each refused with one
line naming the file and the bound:

- before unpickling: the file is at most `MAX_PICKLE_BYTES`, and its
  opcodes are read once without building anything (`pickletools.genops`),
  so no declared length can reach past the end of the data and at most
  `MAX_OPCODES` objects get built;
- while unpickling: an array is created empty and filled from the bytes the
  file stores (numpy's own pickles), never at a size the file merely names;
- after unpickling: the object is measured as if every shared reference
  were a copy (as `np.asarray` or `list()` would make it): at most
  `MAX_ITEMS` Python objects and array elements, at most `MAX_DATA_BYTES`
  of array, bytes and text data, nested at most `MAX_DEPTH` deep, and no
  object that contains itself.

A CIFAR-10 batch (31 MB: one uint8 array of 30.7 MB, 10,000 labels and
10,000 file names) and a palette (a few hundred bytes) are far inside.
"""

import io
import math
import pickle
import pickletools

import numpy as np

from keras_cnn.errors import UserError

# The largest pickle read (a CIFAR-10 batch is 31 MB).
MAX_PICKLE_BYTES = 64 * 2**20
# Opcodes in one pickle: each builds at most one object (a CIFAR-10 batch has about 40,000).
MAX_OPCODES = 2_000_000
# The measured object, shared references counted as copies.
MAX_ITEMS = 2_000_000
MAX_DATA_BYTES = 256 * 2**20
MAX_DEPTH = 32

# (module, name) pairs numpy arrays and dtypes need to be rebuilt, across the
# numpy 1.x (`numpy.core`) and 2.x (`numpy._core`) module names.
_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),  # protocol-2 pickles of bytes made by Python 2
}


class _Refused(pickle.UnpicklingError):
    """A global outside `_ALLOWED` (other `UnpicklingError`s are corrupt data)."""


class _TooBig(Exception):
    """The pickle builds more than a bound allows; the message names the bound."""


def _reconstruct(subtype, shape, dtype):
    # numpy pickles an array as an empty one (shape (0,)) filled by its state; a shape named here
    # would be allocated before any data is seen.
    if subtype is not np.ndarray:
        raise _Refused(f"an array of type {getattr(subtype, '__name__', subtype)!r}")
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    if not all(isinstance(n, int) and n >= 0 for n in shape) or math.prod(shape) > 1:
        raise pickle.UnpicklingError(f"an empty array of shape {shape!r}")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _codecs_encode(text, encoding="utf-8"):
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise _Refused(f"_codecs.encode(..., {encoding!r})")
    return text.encode("latin1")


class _PlainDataUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise _Refused(f"{module}.{name}")
        if name == "_reconstruct":
            return _reconstruct
        if name == "encode":
            return _codecs_encode
        return super().find_class(module, name)


def _prescan(data):
    """Reads the opcodes without building anything; a `_TooBig` past `MAX_OPCODES`.

    A length that reaches past the end of the data (a 4 GB string in a 1 KB
    file, which the C unpickler would allocate first) is truncated data here.
    """
    try:
        for count, _ in enumerate(pickletools.genops(io.BytesIO(data)), 1):
            if count > MAX_OPCODES:
                raise _TooBig(f"over {MAX_OPCODES:,} pickle opcodes")
    except ValueError as e:
        # "expected N bytes in a bytes8, but only M remain", "pickle exhausted before seeing STOP".
        if "remain" in str(e) or "exhausted" in str(e):
            raise pickle.UnpicklingError("pickle data was truncated") from None
        raise


def _leaf_size(obj):
    """(items, bytes) of an object without children."""
    if isinstance(obj, np.ndarray):  # numeric (arrays of objects have children)
        # max(): an array of a zero-size dtype holds no bytes but any number of elements.
        return 1, max(obj.nbytes, obj.size)
    if isinstance(obj, (bytes, bytearray, str)):
        return 1, len(obj)
    if isinstance(obj, int):
        return 1, obj.bit_length() // 8
    return 1, 0


def _children(obj):
    if isinstance(obj, dict):
        return [x for kv in obj.items() for x in kv]
    if isinstance(obj, (list, tuple, set, frozenset)):
        return list(obj)
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject:
        return obj.ravel().tolist()
    return None


def measure(obj):
    """(items, bytes) of `obj` counting every shared reference as a copy; `_TooBig` past the bounds.

    Each distinct object is visited once (sizes of shared parts are
    remembered), so a pickle of shared references is measured in time
    proportional to its size, not to the size it expands to.
    """
    sizes = {}  # id -> (items, bytes) of finished objects
    open_ = set()  # ids on the path from the root: meeting one again is a cycle
    keep = []  # every object measured stays alive, so ids are not reused
    stack = [(obj, 1, None)]
    while stack:
        node, depth, kids = stack.pop()
        key = id(node)
        if kids is None:
            if key in sizes:
                continue
            if key in open_:
                raise _TooBig("an object that contains itself")
            if depth > MAX_DEPTH:
                raise _TooBig(f"nesting over {MAX_DEPTH} levels deep")
            kids = _children(node)
            if kids is None:
                sizes[key] = _leaf_size(node)
                keep.append(node)
                continue
            open_.add(key)
            stack.append((node, depth, kids))
            stack.extend((k, depth + 1, None) for k in kids)
            continue
        items, nbytes = 1, 0
        for k in kids:
            i, b = sizes[id(k)]
            items, nbytes = items + i, nbytes + b
        open_.discard(key)
        sizes[key] = (items, nbytes)
        keep.append(node)
        # Sizes only grow towards the root: the first object over a bound settles it.
        if items > MAX_ITEMS:
            raise _TooBig(f"over {MAX_ITEMS:,} objects and array elements once shared references are "
                          "counted as copies")
        if nbytes > MAX_DATA_BYTES:
            raise _TooBig(f"over {MAX_DATA_BYTES // 2**20} MB of data once shared references are "
                          "counted as copies")
    return sizes[id(obj)]


def loads(data, source="<bytes>"):
    """The plain data pickled in `data` (bytes), or one `UserError` line naming `source`."""
    try:
        if len(data) > MAX_PICKLE_BYTES:
            raise _TooBig(f"{len(data):,} bytes, over the {MAX_PICKLE_BYTES // 2**20} MB a pickle may have")
        _prescan(data)
        obj = _PlainDataUnpickler(io.BytesIO(data), encoding="bytes").load()
        measure(obj)
        return obj
    except _TooBig as e:
        raise UserError(f"{source}: refusing pickle: {e} (keras_cnn.data.safe_pickle bounds)") from None
    except _Refused as e:
        raise UserError(f"{source}: refusing pickle that asks for {e} "
                        "(only plain data and numpy arrays are allowed)") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            MemoryError, RecursionError, OverflowError) as e:
        # "pickle data was truncated", "invalid load key": a file cut short or not a pickle at all.
        first = (str(e).strip().splitlines() or [""])[0][:160]
        raise UserError(f"{source}: corrupt pickle ({type(e).__name__}: {first})") from None


def load(path):
    """`loads` of the file `path`; a file over `MAX_PICKLE_BYTES` is refused before it is read."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PICKLE_BYTES + 1)
    except OSError as e:
        raise UserError(f"{path}: cannot read pickle ({e.strerror or e})") from None
    if len(data) > MAX_PICKLE_BYTES:
        raise UserError(f"{path}: refusing pickle: over the {MAX_PICKLE_BYTES // 2**20} MB a pickle may have "
                        "(keras_cnn.data.safe_pickle bounds)")
    return loads(data, source=path)
