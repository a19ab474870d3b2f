import io
import pickle

import keras
import numpy as np
import pytest
import tensorflow as tf
from skimage import color as skcolor

from keras_cnn.colorization import color
from keras_cnn.colorization.palette import Palette, fit_palette, grey, load_palette, save_palette
from keras_cnn.colorization.pipeline import PixelCrossEntropy, make_dataset
from keras_cnn.colorization.preprocessing import ColorizerInput, downsize
from keras_cnn.errors import UserError

# Also run in-process under KERAS_BACKEND=jax by .ci/run.
pytestmark = pytest.mark.portable

RNG = np.random.RandomState(0)
IMAGES = RNG.randint(0, 256, (6, 8, 8, 3)).astype(np.uint8)


def test_rgb_to_lab_and_back_match_skimage():
    rgb = np.concatenate([RNG.uniform(0, 1, (500, 3)), np.eye(3), [[0, 0, 0], [1, 1, 1], [0.01, 0.02, 0.03]]])
    rgb = rgb.astype(np.float32)
    lab = color.rgb_to_lab(rgb).numpy()
    np.testing.assert_allclose(lab, skcolor.rgb2lab(rgb.astype(np.float64)), atol=2e-3)
    lab_in = np.stack([RNG.uniform(0, 100, 500), RNG.uniform(-80, 80, 500), RNG.uniform(-80, 80, 500)], -1)
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = skcolor.lab2rgb(lab_in)
    np.testing.assert_allclose(color.lab_to_rgb(lab_in.astype(np.float32)).numpy(), expected, atol=1e-3)


def test_delta_e_and_psnr_against_references():
    a, b = RNG.uniform(0, 1, (2, 4, 4, 3)).astype(np.float32)
    de = color.delta_e76(color.rgb_to_lab(a), color.rgb_to_lab(b)).numpy()
    np.testing.assert_allclose(de, skcolor.deltaE_cie76(skcolor.rgb2lab(a), skcolor.rgb2lab(b)), atol=5e-3)
    mse = np.mean((a - b) ** 2)
    np.testing.assert_allclose(color.psnr(a, b).numpy(), 10 * np.log10(1 / mse), rtol=1e-4)


def _np(x):
    return keras.ops.convert_to_numpy(x) if keras.ops.is_tensor(x) else np.asarray(x)


@pytest.mark.parametrize("xp", color.NAMESPACES)
def test_colour_maths_in_every_namespace_match_skimage(xp):
    """One implementation for keras.ops (the model), tf.experimental.numpy (tf.data, export) and NumPy."""
    rgb = RNG.uniform(0, 1, (2, 5, 7, 3)).astype(np.float32)
    lab = _np(color.rgb_to_lab(rgb, xp))
    np.testing.assert_allclose(lab, skcolor.rgb2lab(rgb.astype(np.float64)), atol=2e-3)
    np.testing.assert_allclose(_np(color.lab_to_rgb(lab, xp)), rgb, atol=1e-3)
    other = rgb[::-1]
    np.testing.assert_allclose(_np(color.delta_e76(lab, color.rgb_to_lab(other, xp), xp)),
                               skcolor.deltaE_cie76(skcolor.rgb2lab(rgb), skcolor.rgb2lab(other)), atol=5e-3)
    mse = ((rgb - other) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(_np(color.psnr(rgb, other, xp)), 10 * np.log10(1 / mse), rtol=1e-4)
    assert _np(color.psnr(rgb, rgb, xp)).tolist() == [color.MAX_PSNR] * 2
    np.testing.assert_allclose(_np(color.grey(IMAGES, xp)), IMAGES.mean(-1, keepdims=True) / 256, atol=1e-6)


@pytest.mark.parametrize("space", ["rgb", "ab"])
def test_palette_maps_agree_in_every_namespace(space):
    palette = fit_palette(IMAGES, k=5, space=space, seed=0)
    logits = RNG.normal(0, 2, IMAGES.shape[:-1] + (5,)).astype(np.float32)
    g = grey(IMAGES, "numpy")
    want = {"labels": palette.labels(IMAGES, "numpy"), "quantize": palette.quantize(IMAGES, "numpy"),
            "argmax": palette.decode(logits, g, "argmax", xp="numpy"),
            "annealed": palette.decode(logits, g, "annealed", 0.38, xp="numpy")}
    for xp in ("keras", "tensorflow"):
        got = {"labels": palette.labels(IMAGES, xp), "quantize": palette.quantize(IMAGES, xp),
               "argmax": palette.decode(logits, g, "argmax", xp=xp),
               "annealed": palette.decode(logits, g, "annealed", 0.38, xp=xp)}
        for key in want:
            # uint8 colours may round a float32 ulp apart: at most one step.
            assert np.abs(_np(got[key]).astype(int) - want[key]).max() <= (0 if key == "labels" else 1), (xp, key)
    errors = [[float(_np(v)) for v in color.colour_errors(IMAGES, want["argmax"], xp)] for xp in color.NAMESPACES]
    np.testing.assert_allclose(errors[1:], [errors[0]] * 2, rtol=1e-5)


def test_fit_palette_is_deterministic_and_in_course_units():
    p1, p2 = fit_palette(IMAGES, k=5, seed=3), fit_palette(IMAGES, k=5, seed=3)
    np.testing.assert_array_equal(p1.colours, p2.colours)
    assert p1.colours.shape == (5, 3) and p1.colours.max() < 1.0
    ab = fit_palette(IMAGES, k=4, space="ab", seed=0)
    assert ab.colours.shape == (4, 2) and ab.space == "ab"


def test_labels_are_nearest_centroid():
    palette = fit_palette(IMAGES, k=5, seed=0)
    labels = palette.labels(IMAGES).numpy()
    pixels = IMAGES.reshape(-1, 3) / 256.0
    brute = np.argmin(((pixels[:, None] - palette.colours[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(labels.ravel(), brute)
    ab = fit_palette(IMAGES, k=4, space="ab", seed=0)
    abs_ = skcolor.rgb2lab(IMAGES / 255.0)[..., 1:].reshape(-1, 2)
    brute = np.argmin(((abs_[:, None] - ab.colours[None]) ** 2).sum(-1), axis=1)
    assert np.mean(ab.labels(IMAGES).numpy().ravel() == brute) > 0.99  # float32 vs float64 ties


def test_decode_argmax_and_annealed_mean():
    palette = Palette([[0.0, 0.0, 0.0], [0.5, 0.25, 0.0], [255 / 256, 255 / 256, 255 / 256]])
    logits = np.log(np.array([[[[0.2, 0.5, 0.3]]]], np.float32))
    g = np.zeros((1, 1, 1, 1), np.float32)
    assert palette.decode(logits, g, "argmax").numpy().tolist() == [[[[128, 64, 0]]]]
    t = 0.38
    w = np.array([0.2, 0.5, 0.3]) ** (1 / t)
    w /= w.sum()
    expected = np.round(np.clip(w @ palette.colours * 256 / 255, 0, 1) * 255)
    np.testing.assert_array_equal(palette.decode(logits, g, "annealed", t).numpy()[0, 0, 0], expected)
    # T = 1 is the plain mean, T -> 0 the mode.
    mean = np.round(np.array([0.2, 0.5, 0.3]) @ palette.colours * 256 / 255 * 255)
    np.testing.assert_allclose(palette.decode(logits, g, "annealed", 1.0).numpy()[0, 0, 0], mean, atol=1)
    assert palette.decode(logits, g, "annealed", 0.01).numpy().tolist() == [[[[128, 64, 0]]]]
    with pytest.raises(UserError, match="unknown decoding"):
        palette.decode(logits, g, "median")


def test_ab_decode_takes_lightness_from_grey():
    ab = Palette([[0.0, 0.0], [40.0, 30.0]])
    g = np.full((1, 2, 2, 1), 128 / 256, np.float32)
    out = ab.decode(np.array([[[[5.0, 0.0]] * 2] * 2], np.float32), g).numpy()
    np.testing.assert_allclose(out, 128, atol=1)  # a = b = 0 keeps the grey
    coloured = ab.decode(np.array([[[[0.0, 5.0]] * 2] * 2], np.float32), g).numpy()[0, 0, 0]
    lab = skcolor.rgb2lab(coloured / 255.0)
    assert abs(lab[0] - skcolor.rgb2lab(np.full(3, 128 / 255))[0]) < 1.5 and lab[1] > 30


def test_quantize_is_the_ceiling_of_argmax():
    palette = fit_palette(IMAGES, k=5, seed=0)
    q = palette.quantize(IMAGES).numpy()
    np.testing.assert_array_equal(palette.labels(q).numpy(), palette.labels(IMAGES).numpy())


def test_class_weights_follow_zhang():
    palette = Palette(np.eye(3) * 0.9)
    w = palette.class_weights([80, 15, 5], lam=0.5, sigma=1e-3)  # tiny sigma: no smoothing
    p = np.array([0.8, 0.15, 0.05])
    expected = 1 / (0.5 * p + 0.5 / 3)
    expected /= (expected * p).sum()
    np.testing.assert_allclose(w, expected, rtol=1e-5)
    assert w[2] > w[1] > w[0]


def test_save_load_and_bad_palette_files(tmp_path):
    palette = fit_palette(IMAGES, k=4, seed=0)
    save_palette(tmp_path / "p.npy", palette)
    np.testing.assert_array_equal(load_palette(str(tmp_path / "p.npy")).colours, palette.colours)
    np.save(tmp_path / "bad.npy", np.zeros((4, 5)))
    with pytest.raises(UserError, match=r"bad\.npy: palette must be \(K, 3\)"):
        load_palette(str(tmp_path / "bad.npy"))
    (tmp_path / "junk.npy").write_bytes(b"junk")
    with pytest.raises(UserError, match="junk.npy"):
        load_palette(str(tmp_path / "junk.npy"))
    with pytest.raises(UserError, match="does not exist"):
        load_palette(str(tmp_path / "none.npy"))


def test_course_pickled_palette_needs_opt_in(tmp_path):
    codebook = np.random.RandomState(0).uniform(0, 1, (24, 3))
    np.save(tmp_path / "colour_kmeans24_cat7.npy", np.array((codebook, 0.05), dtype=object), allow_pickle=True)
    with pytest.raises(UserError, match="--allow-pickle-palette"):
        load_palette(str(tmp_path / "colour_kmeans24_cat7.npy"))
    palette = load_palette(str(tmp_path / "colour_kmeans24_cat7.npy"), allow_pickle=True)
    np.testing.assert_allclose(palette.colours, codebook, rtol=1e-6)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def _npy(array, allow_pickle=False):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


CODEBOOK = np.random.RandomState(0).uniform(0, 1, (24, 3))
COURSE = _npy(np.array((CODEBOOK, 0.05), dtype=object), allow_pickle=True)

# (id, the file's bytes, --allow-pickle-palette, None: it loads as CODEBOOK, else what the one line says after
# "PATH: "). Pickles are only ever read by the plain-data unpickler.
PALETTE_FILES = [
    ("course-npy", COURSE, True, None),
    ("raw-pickle-pair", pickle.dumps((CODEBOOK, 0.05)), True, None),
    ("raw-pickle-codebook", pickle.dumps(CODEBOOK), True, None),
    ("raw-pickle-no-opt-in", pickle.dumps((CODEBOOK, 0.05)), False,
     "palette is a pickle, not a .npy file; pass --allow-pickle-palette to read it"),
    ("raw-pickle-code", pickle.dumps(_Evil()), True, "refusing pickle that asks for posix.system"),
    ("raw-pickle-dict", pickle.dumps({"codebook": 1}), True, "the pickle holds a dict, not the course's"),
    ("raw-pickle-ragged", pickle.dumps(([[0.1, 0.2, 0.3], [0.4]], 0.05)), True, "the pickle holds a tuple, not"),
    ("raw-pickle-cut", pickle.dumps((CODEBOOK, 0.05))[:40], True, "corrupt pickle (UnpicklingError: pickle data "
                                                                  "was truncated)"),
    ("raw-pickle-one-colour", pickle.dumps((CODEBOOK[:1], 0.05)), True, "palette must be (K, 3) RGB"),
    ("course-npy-cut", COURSE[:200], True, "corrupt pickle"),
    ("npy-bad-header", b"\x93NUMPY\x01\x00garbage", True, "not a .npy palette (EOF: reading array header"),
    ("npy-cut", _npy(CODEBOOK.astype(np.float32))[:100], False, "not a .npy palette"),
    ("npy-structured", _npy(np.zeros(4, dtype=[("r", "f4"), ("g", "f4")])), False, ""),
    ("npy-nan", _npy(np.full((4, 3), np.nan)), False, "palette holds non-finite values"),
    ("empty", b"", True, "not a .npy palette (it does not start as a .npy file does)"),
    ("text", b"0.1 0.2 0.3\n", True, "not a .npy palette (it does not start as a .npy file does)"),
    ("huge", b"\x93NUMPY" + b"\0" * (2**20 + 10), False, "over 1 MB, not a palette"),
]


@pytest.mark.parametrize("content,allow,expected", [row[1:] for row in PALETTE_FILES],
                         ids=[row[0] for row in PALETTE_FILES])
def test_palette_files_load_or_fail_in_one_line(tmp_path, content, allow, expected):
    path = tmp_path / "palette.npy"
    path.write_bytes(content)
    if expected is None:
        np.testing.assert_allclose(load_palette(str(path), allow_pickle=allow).colours, CODEBOOK, rtol=1e-6)
        return
    with pytest.raises(UserError) as caught:
        load_palette(str(path), allow_pickle=allow)
    message = str(caught.value)
    assert message.startswith(f"{path}: {expected}") and "\n" not in message, message


def test_pipeline_yields_pixels_and_labels_and_the_model_input_layer_converts_them():
    palette = fit_palette(IMAGES, k=4, seed=0)
    x, y = next(iter(make_dataset(IMAGES, palette, batch_size=4)))
    np.testing.assert_array_equal(x.numpy(), IMAGES[:4])
    np.testing.assert_array_equal(y.numpy(), palette.labels(IMAGES[:4]).numpy())
    as_numpy = keras.ops.convert_to_numpy  # the input layer computes in Keras' backend, tf.data in TensorFlow
    np.testing.assert_allclose(as_numpy(ColorizerInput("grey")(x.numpy())), IMAGES[:4].mean(-1, keepdims=True) / 256,
                               atol=1e-6)
    np.testing.assert_allclose(as_numpy(ColorizerInput("downsize")(x.numpy())), as_numpy(downsize(IMAGES[:4])),
                               atol=1e-7)
    small = as_numpy(downsize(IMAGES))
    block = IMAGES[0, :4, :4].reshape(-1, 3).mean(0) / 256
    np.testing.assert_allclose(small[0, :4, :4], np.broadcast_to(block, (4, 4, 3)), atol=1e-6)
    np.testing.assert_allclose(grey(IMAGES).numpy(), IMAGES.mean(-1, keepdims=True) / 256, atol=1e-6)


def test_weighted_cross_entropy():
    logits = tf.constant(np.log([[[[0.7, 0.3]], [[0.4, 0.6]]]]), tf.float32)
    y = tf.constant([[[0], [1]]])
    per_pixel = -np.log([0.7, 0.6])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(PixelCrossEntropy()(y.numpy(), logits.numpy())),
                               per_pixel.mean(), rtol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(PixelCrossEntropy([2.0, 0.5])(y.numpy(), logits.numpy())),
                               (per_pixel * [2.0, 0.5]).mean(), rtol=1e-5)


@pytest.mark.tensorflow_only  # tf.GradientTape / TensorFlow kernels; the portable path: tests/test_backends.py
def test_cross_entropy_equals_keras_in_value_and_gradient():
    # PixelCrossEntropy computes log-sum-exp minus the true logit (faster on CPU than the fused kernel).
    rng = np.random.RandomState(0)
    logits = rng.normal(0, 5, (3, 4, 5, 7)).astype("float32")
    logits[0, 0, 0] = [90.0, -90.0, 0, 0, 0, 0, 80.0]  # large logits stay finite
    logits = tf.constant(logits)
    y = tf.constant(rng.randint(0, 7, (3, 4, 5)))
    results = []
    for loss_fn in (PixelCrossEntropy(), lambda t, p: tf.reduce_mean(
            keras.losses.sparse_categorical_crossentropy(t, p, from_logits=True))):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            loss = loss_fn(y, logits)
        results.append((loss.numpy(), tape.gradient(loss, logits).numpy()))
    (ours, grad), (ref, ref_grad) = results
    assert np.isfinite(ours) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(ours, ref, rtol=1e-6)
    np.testing.assert_allclose(grad, ref_grad, atol=1e-7)
