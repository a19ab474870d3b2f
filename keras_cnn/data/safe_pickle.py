"""A pickle reader that builds plain data only.

The CIFAR-10 python batches and the course's palette file are pickles, and
`pickle.load` runs whatever code a file names. `load` here allows only what
those formats need (dicts, lists, tuples, bytes, str, numbers and numpy
arrays); any other global (``os.system``, ``builtins.eval``...) is refused
with a `UserError` naming the file and the global.
"""

import io
import pickle

from keras_cnn.errors import UserError

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


class _PlainDataUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise _Refused(f"{module}.{name}")


def loads(data, source="<bytes>"):
    try:
        return _PlainDataUnpickler(io.BytesIO(data), encoding="bytes").load()
    except _Refused as e:
        raise UserError(f"{source}: refusing pickle that asks for {e} "
                        "(only plain data and numpy arrays are allowed)") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            MemoryError, RecursionError) as e:
        # "pickle data was truncated", "invalid load key": a file cut short or not a pickle at all.
        raise UserError(f"{source}: corrupt pickle ({type(e).__name__}: {e})") from None


def load(path):
    with open(path, "rb") as f:
        return loads(f.read(), source=path)
