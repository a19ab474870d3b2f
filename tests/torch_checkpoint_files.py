"""Writes PyTorch checkpoints in torch.save's genuine layouts, without torch.

`torch.save` pickles (protocol 2) each tensor as a call to
`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
backward_hooks)`, and each storage as a persistent id `("storage",
torch.FloatStorage, key, "cpu", numel)` (plus a `None` view slot in the legacy
layout). Here `TorchGlobal` writes the GLOBAL opcode for a torch name without
importing torch, `Tensor.__reduce__` names `_rebuild_tensor_v2`, and
`CheckpointPickler.persistent_id` emits the storage tuples, so the bytes are
what torch writes. (`tests/dev_torch_crosscheck.py` checks with real torch that
torch.load reads files written this way; the tests never need torch.)
"""

import collections
import io
import os
import pickle
import struct
import zipfile

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
SYS_INFO = {"protocol_version": 1001, "little_endian": True,
            "type_sizes": {"short": 2, "int": 4, "long": 4}}

STORAGE_TYPES = {"float32": "FloatStorage", "float64": "DoubleStorage", "float16": "HalfStorage",
                 "bfloat16": "BFloat16Storage", "int64": "LongStorage", "int32": "IntStorage",
                 "int16": "ShortStorage", "int8": "CharStorage", "uint8": "ByteStorage",
                 "bool": "BoolStorage"}


class TorchGlobal:
    """Pickled as the GLOBAL opcode `module.name` (callable only so pickle accepts it in a reduce)."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):
        raise AssertionError("a stand-in, never called")


class Storage:
    """A flat storage: `data` is a 1-D array whose dtype picks the torch storage type."""

    _next_key = 0

    def __init__(self, data, key=None):
        self.data = np.ascontiguousarray(np.asarray(data).reshape(-1))
        if key is None:
            Storage._next_key += 1
            key = str(Storage._next_key)
        self.key = key
        self.type_name = STORAGE_TYPES[self.data.dtype.name]


class Tensor:
    """A tensor viewing `storage` from `offset` with `size` and `stride` (in elements)."""

    def __init__(self, storage, offset, size, stride, rebuild="_rebuild_tensor_v2"):
        self.storage, self.offset = storage, offset
        self.size, self.stride, self.rebuild = tuple(size), tuple(stride), rebuild

    @classmethod
    def of(cls, array):
        array = np.array(array, order="C")  # not ascontiguousarray: it makes 0-d arrays 1-d
        strides = tuple(s // array.itemsize for s in array.strides)
        return cls(Storage(array), 0, array.shape, strides)

    def __reduce__(self):
        args = (self.storage, self.offset, self.size, self.stride)
        if self.rebuild == "_rebuild_tensor_v2":
            args += (False, collections.OrderedDict())
        return TorchGlobal("torch._utils", self.rebuild), args


class Parameter:
    """An `nn.Parameter`: `torch._utils._rebuild_parameter(tensor, requires_grad, hooks)`."""

    def __init__(self, tensor):
        self.tensor = tensor

    def __reduce__(self):
        return (TorchGlobal("torch._utils", "_rebuild_parameter"),
                (self.tensor, True, collections.OrderedDict()))


class CheckpointPickler(pickle._Pickler):  # the Python pickler: its `save` can be extended
    def __init__(self, file, legacy):
        super().__init__(file, protocol=2)
        self.legacy = legacy
        self.storages = {}

    def persistent_id(self, obj):
        if not isinstance(obj, Storage):
            return None
        self.storages.setdefault(obj.key, obj)
        pid = ("storage", TorchGlobal("torch", obj.type_name), obj.key, "cpu", obj.data.size)
        return pid + (None,) if self.legacy else pid

    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, TorchGlobal):
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("utf-8"))
            return
        super().save(obj, save_persistent_id)


class Hostile:
    """A pickle that runs `touch marker` when plain pickle.load reads it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def state_dict(arrays):
    """An OrderedDict of name -> contiguous Tensor, from name -> array."""
    return collections.OrderedDict((k, Tensor.of(v)) for k, v in arrays.items())


def pickled(obj, legacy=False):
    """(pickle bytes, {key: Storage}) of `obj` as torch.save pickles it."""
    buf = io.BytesIO()
    pickler = CheckpointPickler(buf, legacy)
    pickler.dump(obj)
    return buf.getvalue(), pickler.storages


def legacy_bytes(obj, magic=LEGACY_MAGIC, protocol=1001, sys_info=SYS_INFO):
    """The legacy (torch < 1.6) layout: magic, protocol, sys info, object, keys, storages."""
    body, storages = pickled(obj, legacy=True)
    keys = sorted(storages)
    out = io.BytesIO()
    for header in (magic, protocol, sys_info):
        pickle.dump(header, out, protocol=2)
    out.write(body)
    pickle.dump(keys, out, protocol=2)
    for key in keys:
        data = storages[key].data
        out.write(struct.pack("<q", data.size))
        out.write(data.tobytes())
    return out.getvalue()


def write_legacy(path, obj, **kwargs):
    with open(path, "wb") as f:
        f.write(legacy_bytes(obj, **kwargs))
    return path


def write_zip(path, obj, prefix="archive", byteorder="little", short_by=0):
    """The zip (torch >= 1.6) layout; `short_by` drops bytes from each storage member."""
    body, storages = pickled(obj)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{prefix}/data.pkl", body)
        if byteorder:
            z.writestr(f"{prefix}/byteorder", byteorder)
        for key, storage in storages.items():
            data = storage.data.tobytes()
            z.writestr(f"{prefix}/data/{key}", data[:len(data) - short_by])
        z.writestr(f"{prefix}/version", "3\n")
    return path
