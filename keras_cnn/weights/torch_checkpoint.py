"""PyTorch checkpoints (`torch.save` of a state dict) read as NumPy arrays, without torch.

Published pretrained weights are mostly PyTorch state dicts, and keras_cnn
must not depend on torch. `torch.save` writes one of two layouts:

- **legacy** (torch < 1.6, and many published files): five pickles in a row:
  the magic number 0x1950a86a20f9469cfc6c, the protocol version 1001, a
  sys-info dict (byte order, type sizes), the object itself, and the list of
  storage keys; then for each key its storage as an 8-byte element count and
  the raw bytes.
- **zip** (torch >= 1.6): a zip archive `<prefix>/data.pkl` (the object) with
  one member `<prefix>/data/<key>` of raw bytes per storage, and an optional
  `<prefix>/byteorder` ("little" or "big").

In both, a tensor is pickled as a call to `torch._utils._rebuild_tensor_v2`
with a *persistent id* `('storage', torch.FloatStorage, key, location, numel)`
standing for its storage, plus the storage offset, the size and the strides
(in elements). Several tensors may share one storage (views, tied weights).

`pickle.load` would run any callable a file names (`os.system`, ...), so the
object is read by `_StateDictUnpickler`, whose `find_class` hands out only
stand-ins for what a state dict needs: `collections.OrderedDict`, the tensor
and parameter rebuild functions (which return placeholders), the storage types
and torch dtypes (which only carry a NumPy dtype). Anything else is refused
with a one-line `UserError` naming the file. Once every storage's bytes are
read, each placeholder becomes a C-contiguous NumPy array in the checkpoint's
dtype (bfloat16 through `ml_dtypes`, which Keras depends on).

Sizes are checked before memory is taken for them: a zip archive's members
may unpack to at most what `keras_cnn.zip_bounds` allows and the object
pickle to `MAX_PICKLE_BYTES`; every storage must hold the bytes its record
declares; and the tensors together may take at most `MAX_TENSOR_EXPANSION`
times the bytes stored for them plus `SMALL_TENSOR_BYTES` (tied weights share
a storage; a tensor whose strides repeat its storage's elements, such as a
stride-0 50000 x 50000 view of one float, would need more).
"""

import collections
import io
import math
import os
import pickle
import struct
import tarfile
import zipfile

import numpy as np

from keras_cnn.errors import UserError
from keras_cnn.zip_bounds import check_archive

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# The object pickle of a state dict (ResNet-101's is about 100 KB).
MAX_PICKLE_BYTES = 64 * 2**20
# The arrays made from a checkpoint, against the storage bytes it holds for them.
MAX_TENSOR_EXPANSION = 2
SMALL_TENSOR_BYTES = 16 * 2**20


def _bfloat16():
    import ml_dtypes  # a dependency of keras; only needed for bfloat16 checkpoints

    return np.dtype(ml_dtypes.bfloat16)


# torch.<Name>Storage -> NumPy dtype name of its elements.
_STORAGE_DTYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool",
}

# torch.<dtype> globals (in `_rebuild_tensor_v3` and untyped-storage records).
_TORCH_DTYPES = {
    "float32": "float32", "float": "float32", "float64": "float64", "double": "float64",
    "float16": "float16", "half": "float16", "bfloat16": "bfloat16",
    "int64": "int64", "long": "int64", "int32": "int32", "int": "int32",
    "int16": "int16", "short": "int16", "int8": "int8", "uint8": "uint8", "bool": "bool",
}

# Wrapper dicts ({"state_dict": ..., "epoch": 3}) sometimes carry numpy scalars.
_NUMPY_SCALARS = {("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                  ("numpy._core.multiarray", "scalar")}


def _np_dtype(name):
    return _bfloat16() if name == "bfloat16" else np.dtype(name)


class _Refused(Exception):
    """find_class was asked for a global outside the allow-list."""


class _Malformed(Exception):
    """The file is not what a state dict checkpoint looks like; the message says how."""


class _Frozen:
    """Stand-ins handed to the pickle: not callable, and BUILD cannot change them."""

    __slots__ = ()

    def __setstate__(self, state):
        raise _Malformed(f"pickle tries to set the state of {self!r}")


class _StorageType(_Frozen):
    """What `find_class("torch", "FloatStorage")` returns: just the element dtype."""

    __slots__ = ("name", "dtype")

    def __init__(self, name, dtype):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "dtype", dtype)

    def __repr__(self):
        return f"torch.{self.name}"


class _TorchDtype(_StorageType):
    """What `find_class("torch", "float32")` returns."""

    __slots__ = ()


class _StorageRef(_Frozen):
    """A persistent id: storage `key` holding `numel` elements of `dtype`, maybe a view of it."""

    __slots__ = ("key", "dtype", "numel", "view")

    def __init__(self, key, dtype, numel, view):
        for name, value in (("key", key), ("dtype", dtype), ("numel", numel), ("view", view)):
            object.__setattr__(self, name, value)


class _TensorRef(_Frozen):
    """A tensor waiting for its storage's bytes (they follow the pickle in legacy files)."""

    __slots__ = ("storage", "offset", "size", "stride", "dtype")

    def __init__(self, storage, offset, size, stride, dtype=None):
        if not isinstance(storage, _StorageRef):
            raise _Malformed("a tensor record without a storage")
        if not _is_index(offset):
            raise _Malformed(f"a tensor record with storage offset {offset!r}")
        size, stride = tuple(size), tuple(stride)
        if (len(size) != len(stride) or not all(map(_is_index, size))
                or not all(map(_is_index, stride))):
            raise _Malformed(f"a tensor record with size {size!r} and stride {stride!r}")
        if dtype is not None and not isinstance(dtype, _TorchDtype):
            raise _Malformed(f"a tensor record with dtype {dtype!r}")
        for name, value in (("storage", storage), ("offset", offset), ("size", size),
                            ("stride", stride), ("dtype", dtype and dtype.dtype)):
            object.__setattr__(self, name, value)


def _is_index(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# === torch._utils functions, as the pickle calls them ===

def _rebuild_tensor(storage, storage_offset, size, stride):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       dtype, metadata=None):
    return _TensorRef(storage, storage_offset, size, stride, dtype)


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
    if not isinstance(data, _TensorRef):
        raise _Malformed("a parameter record without a tensor")
    return data


_REBUILDERS = {
    "_rebuild_tensor": _rebuild_tensor,
    "_rebuild_tensor_v2": _rebuild_tensor_v2,
    "_rebuild_tensor_v3": _rebuild_tensor_v3,
    "_rebuild_parameter": _rebuild_parameter,
    "_rebuild_parameter_with_state": _rebuild_parameter,
}


def _codecs_encode(text, encoding="utf-8"):
    # Protocol-2 pickles write bytes as _codecs.encode(str, "latin1").
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise _Refused(f"_codecs.encode(..., {encoding!r})")
    return text.encode("latin1")


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles a state dict: allow-listed globals only, persistent ids become `_StorageRef`s."""

    def __init__(self, file, with_storages=True):
        super().__init__(file, encoding="utf-8")
        self._with_storages = with_storages
        self.storages = {}  # key -> the root _StorageRef of every persistent id seen

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in _REBUILDERS:
            return _REBUILDERS[name]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, _np_dtype(_STORAGE_DTYPES[name]))
        if (module, name) in (("torch.storage", "UntypedStorage"), ("torch", "UntypedStorage")):
            return _StorageType("UntypedStorage", np.dtype(np.uint8))
        if module == "torch" and name in _TORCH_DTYPES:
            return _TorchDtype(name, _np_dtype(_TORCH_DTYPES[name]))
        # Protocol 2 writes Python 3's builtins under their Python 2 name.
        if module in ("builtins", "__builtin__") and name in ("set", "frozenset"):
            return set if name == "set" else frozenset
        if (module, name) == ("_codecs", "encode"):
            return _codecs_encode
        if (module, name) in _NUMPY_SCALARS:
            return super().find_class(module, name)
        raise _Refused(f"{module}.{name}")

    def persistent_load(self, pid):
        if not self._with_storages:
            raise _Malformed("a storage record outside the checkpoint's object")
        if (not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType) or not isinstance(pid[2], (str, int))
                or not _is_index(pid[4])):
            raise _Malformed(f"an unexpected persistent id {str(pid)[:80]}")
        _, storage_type, key, _location, numel = pid[:5]
        view = pid[5] if len(pid) == 6 else None
        if view is not None:
            # Legacy storage views: (view_key, offset, size) in elements of the root storage.
            if not (isinstance(view, tuple) and len(view) == 3 and _is_index(view[1])
                    and _is_index(view[2])):
                raise _Malformed(f"an unexpected storage view {str(view)[:80]}")
            view = (view[1], view[2])
        ref = _StorageRef(str(key), storage_type.dtype, numel, view)
        seen = self.storages.setdefault(ref.key, ref)
        if (seen.dtype, seen.numel) != (ref.dtype, ref.numel):
            raise _Malformed(f"storage {ref.key} is recorded as {seen.numel} x {seen.dtype} "
                             f"and as {ref.numel} x {ref.dtype}")
        return ref


def _unpickle(file, with_storages=True):
    """(object, {storage key: root _StorageRef}) of the next pickle in `file`."""
    unpickler = _StateDictUnpickler(file, with_storages)
    return unpickler.load(), unpickler.storages


# === Storages and tensors ===

def _tensor_array(ref, raw):
    """The C-contiguous array of `ref`, from `raw[key]` (the storage's bytes)."""
    storage = ref.storage
    data = raw[storage.key]
    itemsize = storage.dtype.itemsize
    if len(data) < storage.numel * itemsize:
        raise _Malformed(f"storage {storage.key} is short: {len(data)} bytes for "
                         f"{storage.numel} elements of {storage.dtype.name}")
    elements = np.frombuffer(data, dtype=storage.dtype, count=storage.numel)
    if storage.view is not None:
        start, length = storage.view
        if start + length > len(elements):
            raise _Malformed(f"a view of storage {storage.key} reaches past its end")
        elements = elements[start:start + length]
    if ref.dtype is not None and ref.dtype != storage.dtype:
        # _rebuild_tensor_v3 on an untyped (byte) storage: reinterpret the bytes.
        usable = len(elements) * elements.itemsize // ref.dtype.itemsize * ref.dtype.itemsize
        elements = elements.view(np.uint8)[:usable].view(ref.dtype.newbyteorder(storage.dtype.byteorder))
    if 0 in ref.size:
        return np.zeros(ref.size, elements.dtype.newbyteorder("="))
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
    if last >= len(elements):
        raise _Malformed(f"a tensor of shape {ref.size} reaches past the end of storage {storage.key}")
    view = np.lib.stride_tricks.as_strided(
        elements[ref.offset:], shape=ref.size,
        strides=[s * elements.itemsize for s in ref.stride], writeable=False)
    # np.array, not np.ascontiguousarray, which turns 0-d tensors into shape (1,).
    return np.array(view, dtype=view.dtype.newbyteorder("="), order="C", copy=True)


def _state_dict_of(obj):
    """The {name: tensor} mapping in `obj`, unwrapping {"state_dict": ...} / {"model": ...}."""
    def is_state_dict(d):
        return (isinstance(d, dict) and len(d) > 0
                and all(isinstance(k, str) and isinstance(v, _TensorRef) for k, v in d.items()))

    if is_state_dict(obj):
        return obj
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if is_state_dict(obj.get(key)):
                return obj[key]
        keys = ", ".join(map(repr, list(obj)[:5]))
        raise _Malformed(f"holds a dict ({keys}{', ...' if len(obj) > 5 else ''}) that is not a "
                         "state dict of tensors, nor wraps one under 'state_dict' or 'model'")
    raise _Malformed(f"holds a {type(obj).__name__}, not a state dict of tensors")


def _tensor_bytes(ref):
    dtype = ref.dtype if ref.dtype is not None else ref.storage.dtype
    return math.prod(ref.size) * dtype.itemsize


def _materialise(state_dict, raw):
    # Before any array is made: what the tensors will take, against what the file stores for them.
    stored = sum(len(data) for data in raw.values())
    wanted = sum(_tensor_bytes(ref) for ref in state_dict.values())
    limit = MAX_TENSOR_EXPANSION * stored + SMALL_TENSOR_BYTES
    if wanted > limit:
        name, ref = max(state_dict.items(), key=lambda item: _tensor_bytes(item[1]))
        raise _Malformed(
            f"its tensors would take {wanted:,} bytes from {stored:,} stored ({name!r}: shape "
            f"{'x'.join(map(str, ref.size)) or 'scalar'}, stride {ref.stride}), over the {limit:,} allowed "
            f"({MAX_TENSOR_EXPANSION} times the stored bytes plus {SMALL_TENSOR_BYTES // 2**20} MB); "
            "refusing before reading them")
    return collections.OrderedDict((k, _tensor_array(v, raw)) for k, v in state_dict.items())


# === The two layouts ===

def _read_zip(path):
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise _Malformed(f"truncated or corrupt zip archive ({e})") from None
    with archive:
        check_archive(archive, path, "checkpoint")
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if not pickles:
            raise _Malformed("a zip archive without <prefix>/data.pkl, not a PyTorch checkpoint")
        prefix = pickles[0][:-len("data.pkl")]
        order = "little"
        if prefix + "byteorder" in names:
            if archive.getinfo(prefix + "byteorder").file_size > 16:
                raise _Malformed(f"{prefix}byteorder is not \"little\" or \"big\"")
            order = archive.read(prefix + "byteorder").decode("ascii", "replace").strip()
            if order not in ("little", "big"):
                raise _Malformed(f"unknown byte order {order!r}")
        pickle_size = archive.getinfo(prefix + "data.pkl").file_size
        if pickle_size > MAX_PICKLE_BYTES:
            raise _Malformed(f"{prefix}data.pkl unpacks to {pickle_size:,} bytes, over the "
                             f"{MAX_PICKLE_BYTES // 2**20} MB a state dict's pickle may have")
        obj, storages = _unpickle(io.BytesIO(archive.read(prefix + "data.pkl")))
        state_dict = _state_dict_of(obj)
        used = {ref.storage.key for ref in state_dict.values()}
        raw = {}
        for key in sorted(used):
            storage = storages[key]
            member = f"{prefix}data/{key}"
            if member not in names:
                raise _Malformed(f"storage {key} is missing from the archive ({member})")
            need = storage.numel * storage.dtype.itemsize
            have = archive.getinfo(member).file_size
            if have < need:
                raise _Malformed(f"storage {key} is short: {have} bytes for {storage.numel} "
                                 f"elements of {storage.dtype.name}")
            with archive.open(member) as f:
                raw[key] = f.read(need)  # whatever follows is not the storage's
        if order == "big":
            state_dict = _with_byte_order(state_dict, ">")
        return _materialise(state_dict, raw)


def _with_byte_order(state_dict, order):
    """Placeholders whose storages hold big-endian elements."""
    out = collections.OrderedDict()
    for name, ref in state_dict.items():
        s = ref.storage
        storage = _StorageRef(s.key, s.dtype.newbyteorder(order), s.numel, s.view)
        out[name] = _TensorRef(storage, ref.offset, ref.size, ref.stride,
                               None if ref.dtype is None else
                               _TorchDtype("", ref.dtype.newbyteorder(order)))
    return out


def _read_legacy(path):
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        try:
            magic = _unpickle(f, with_storages=False)[0]
        except _Refused:
            raise
        except Exception:  # random bytes fail to unpickle in many ways
            magic = None
        if magic != LEGACY_MAGIC:
            if tarfile.is_tarfile(path):
                raise _Malformed("a tar checkpoint of PyTorch < 0.4; load and re-save it with a "
                                 "newer torch") from None
            raise _Malformed("not a PyTorch checkpoint (neither a zip archive nor the legacy "
                             "magic number)") from None
        protocol = _unpickle(f, with_storages=False)[0]
        if protocol != LEGACY_PROTOCOL:
            raise _Malformed(f"legacy protocol version {protocol!r}, expected {LEGACY_PROTOCOL}")
        sys_info = _unpickle(f, with_storages=False)[0]
        little = sys_info.get("little_endian", True) if isinstance(sys_info, dict) else True
        obj, roots = _unpickle(f)
        state_dict = _state_dict_of(obj)
        used = {ref.storage.key for ref in state_dict.values()}
        keys = _unpickle(f, with_storages=False)[0]
        if not isinstance(keys, list):
            raise _Malformed("the storage key list is missing")
        count_format = "<q" if little else ">q"
        raw = {}
        for key in map(str, keys):
            # Storages the chosen dict does not use (an optimizer's, say) are skipped over.
            header = f.read(8)
            if len(header) < 8:
                raise _Malformed(f"truncated: storage {key} has no size header")
            (count,) = struct.unpack(count_format, header)
            storage = roots.get(key)
            if storage is None:
                raise _Malformed(f"storage {key} is listed but no record in the pickle names it")
            if count != storage.numel:
                raise _Malformed(f"storage {key} holds {count} elements, its record says {storage.numel}")
            need, left = count * storage.dtype.itemsize, size - f.tell()
            if need > left:
                raise _Malformed(f"truncated: storage {key} is short ({left} bytes left, "
                                 f"{need} needed)")
            if key in used:
                raw[key] = f.read(need)
            else:  # e.g. an optimizer's state beside the model's
                f.seek(need, os.SEEK_CUR)
        missing = sorted(used - set(raw))
        if missing:
            raise _Malformed(f"storage {missing[0]} is used but not in the file"
                             f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}")
    if not little:
        state_dict = _with_byte_order(state_dict, ">")
    return _materialise(state_dict, raw)


def load_torch_state_dict(path):
    """Reads a PyTorch state dict checkpoint (legacy or zip layout) without torch.

    Args:
        path: a `.pth` / `.pt` file written by `torch.save(model.state_dict(), path)`,
            or by `torch.save({"state_dict": ...}, path)` / `{"model": ...}`.

    Returns:
        An `OrderedDict` of parameter name -> C-contiguous `numpy.ndarray`, in
        the file's order and dtype (strides and storage offsets applied, shared
        storages copied apart).

    Raises:
        UserError: one line naming the file when it is not a checkpoint, is
            truncated or corrupt, asks the unpickler for anything outside the
            allow-list (nothing it names is imported or run), or holds no state dict.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"{path}: checkpoint file does not exist")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        if head == b"PK\x03\x04":
            return _read_zip(path)
        return _read_legacy(path)
    except UserError:  # the archive's bounds (keras_cnn.zip_bounds) name the file already
        raise
    except _Refused as e:
        raise UserError(f"{path}: refusing a pickle that asks for {e} (only tensors, storages "
                        "and plain containers are allowed; nothing was run)") from None
    except _Malformed as e:
        raise UserError(f"{path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError,
            AttributeError, struct.error, zipfile.BadZipFile, OverflowError, MemoryError,
            UnicodeDecodeError) as e:
        first = (str(e).strip().splitlines() or [""])[0][:160]
        raise UserError(f"{path}: truncated or corrupt checkpoint ({type(e).__name__}: {first})") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read checkpoint ({e.strerror or e})") from None


def parameter_count(state_dict):
    """Number of values in a state dict's floating-point tensors (BatchNorm counters excluded)."""
    return sum(math.prod(a.shape) for a in state_dict.values() if a.dtype.kind == "f")
