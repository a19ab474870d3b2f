"""Image/mask folders, mask checks, the tf.data pipeline, preprocessing, the real Weizmann horses."""

import os

import numpy as np
import pytest
from PIL import Image

from keras_cnn.errors import UserError
from keras_cnn.segmentation import data as data_lib
from keras_cnn.segmentation.data import (
    Augment,
    MaskDecoder,
    check_pairs,
    folder_mask_decoder,
    folder_pairs,
    make_dataset,
    split_pairs,
)
from keras_cnn.segmentation.preprocessing import ImageNormalization, preprocess
from tests.helpers import shared_data_dir


def make_folder(root, n=8, size=(48, 40), mask_size=(24, 20), seed=0, mask_mode="L"):
    """Photos with a bright disc on noise; masks 255 on the disc, at another size (same aspect)."""
    rng = np.random.RandomState(seed)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    os.makedirs(os.path.join(root, "masks"), exist_ok=True)
    for i in range(n):
        w, h = size
        yy, xx = np.mgrid[:h, :w]
        cy, cx, r = rng.randint(h // 3, 2 * h // 3), rng.randint(w // 3, 2 * w // 3), h // 4
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2
        photo = rng.randint(0, 90, (h, w, 3)).astype(np.uint8)
        photo[disc] = (230, 200, 40)
        Image.fromarray(photo).save(os.path.join(root, "images", f"img{i:02d}.jpg"), quality=95)
        mask = Image.fromarray((disc * 255).astype(np.uint8)).resize(mask_size, Image.NEAREST)
        if mask_mode == "P":
            mask = Image.fromarray((np.asarray(mask) > 0).astype(np.uint8), mode="L").convert("P")
        mask.save(os.path.join(root, "masks", f"img{i:02d}.png"))
    return str(root)


def test_preprocess_modes_by_hand():
    white = np.full((1, 1, 1, 3), 255, np.uint8)
    np.testing.assert_allclose(preprocess(white, "imagenet")[0, 0, 0],
                               [(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225], rtol=1e-5)
    rgb = np.array([[[[10, 20, 30]]]], np.uint8)
    np.testing.assert_allclose(preprocess(rgb, "caffe")[0, 0, 0], [30 - 103.939, 20 - 116.779, 10 - 123.68],
                               rtol=1e-5)
    np.testing.assert_allclose(preprocess(white, "tf")[0, 0, 0], [1, 1, 1])
    for mode in ("imagenet", "caffe", "tf"):
        # The layer in front of every segmenter is the same maths.
        np.testing.assert_allclose(ImageNormalization(mode)(rgb), preprocess(rgb, mode), rtol=1e-6)
    with pytest.raises(UserError, match="unknown preprocessing"):
        preprocess(white, "torch")


def test_folder_pairs_split_and_binary_masks(tmp_path):
    root = make_folder(tmp_path / "d", n=8)
    pairs = folder_pairs(root)
    assert len(pairs) == 8 and all(os.path.basename(i)[:5] == os.path.basename(m)[:5] for i, m in pairs)
    train, val = split_pairs(pairs, 0.25)
    assert len(val) == 2 and len(train) == 6 and not set(train) & set(val)
    # Deterministic whatever the listing order, and stable when a file is added.
    assert split_pairs(list(reversed(pairs)), 0.25) == (train, val)
    decoder = folder_mask_decoder([m for _, m in pairs], num_classes=2)
    assert decoder == MaskDecoder(binary=True)
    assert set(np.unique(decoder(pairs[0][1]))) == {0, 1}
    check_pairs(pairs, decoder)


def test_palette_class_index_masks_keep_their_indices(tmp_path):
    root = make_folder(tmp_path / "d", n=4, mask_mode="P")
    pairs = folder_pairs(root)
    decoder = folder_mask_decoder([m for _, m in pairs], num_classes=2)
    assert decoder == MaskDecoder(binary=False)
    assert set(np.unique(decoder(pairs[0][1]))) == {0, 1}


def test_missing_partners_and_bad_files_name_the_file(tmp_path):
    root = make_folder(tmp_path / "d", n=3)
    os.remove(os.path.join(root, "masks", "img01.png"))
    with pytest.raises(UserError, match=r"img01.jpg: image has no mask"):
        folder_pairs(root)
    root = make_folder(tmp_path / "e", n=3)
    os.remove(os.path.join(root, "images", "img02.jpg"))
    with pytest.raises(UserError, match=r"masks/img02.png: mask has no image"):
        folder_pairs(root)

    root = make_folder(tmp_path / "f", n=3)
    Image.fromarray(np.full((20, 24), 128, np.uint8)).save(os.path.join(root, "masks", "img01.png"))
    pairs = folder_pairs(root)
    with pytest.raises(UserError, match=r"img01.png: mask values \[128\] are neither binary"):
        folder_mask_decoder([m for _, m in pairs], num_classes=2)
    # The same values are fine as class indices when there are enough classes.
    assert folder_mask_decoder([m for _, m in pairs], num_classes=129) == MaskDecoder(binary=False)

    root = make_folder(tmp_path / "g", n=3)
    with open(os.path.join(root, "images", "img00.jpg"), "wb") as f:
        f.write(b"\xff\xd8 not really a jpeg")
    pairs = folder_pairs(root)
    with pytest.raises(UserError, match=r"img00.jpg: cannot be decoded as an image"):
        check_pairs(pairs, MaskDecoder(binary=True))

    root = make_folder(tmp_path / "h", n=3)
    Image.fromarray((np.zeros((20, 24, 3)) + (255, 0, 0)).astype(np.uint8)).save(
        os.path.join(root, "masks", "img02.png"))
    with pytest.raises(UserError, match=r"img02.png: mask is a colour image"):
        folder_mask_decoder([m for _, m in folder_pairs(root)], num_classes=2)


def test_pipeline_shapes_resize_and_augmentation(tmp_path):
    root = make_folder(tmp_path / "d", n=6)
    pairs = folder_pairs(root)
    decoder = MaskDecoder(binary=True)
    ds = make_dataset(pairs, decoder, (32, 32), batch_size=4, training=True,
                      augment=Augment(min_crop=0.5, flip=True, color_jitter=0.2))
    batches = list(ds)
    assert len(batches) == 1  # 6 pairs, batch 4, the partial batch dropped while training
    x, y = batches[0]
    assert x.shape == (4, 32, 32, 3) and x.dtype.name == "float32"
    assert y.shape == (4, 32, 32) and y.dtype.name == "int32"
    # Nearest resizing and nearest crops never invent labels.
    assert set(np.unique(y.numpy())) <= {0, 1}
    val = list(make_dataset(pairs, decoder, (32, 32), batch_size=4))
    assert [b[0].shape[0] for b in val] == [4, 2]
    # Without augmentation the disc stays where the mask says: bright pixels inside it.
    images, masks = data_lib.load_examples(pairs[:2], decoder, (32, 32))
    assert images.dtype == np.uint8 and masks.shape == (2, 32, 32)
    inside = images[masks == 1].mean(axis=0)
    outside = images[masks == 0].mean(axis=0)
    assert inside[0] > 150 > outside[0]


def test_augmentation_crop_box_of_one_is_identity_or_mirror():
    import tensorflow as tf

    images = tf.constant(np.random.RandomState(0).randint(0, 255, (8, 16, 16, 3)), tf.uint8)
    masks = tf.constant(np.random.RandomState(1).randint(0, 2, (8, 16, 16)), tf.uint8)
    out_x, out_y = data_lib.augment_batch(images, masks, Augment(min_crop=1.0, flip=True))
    for i in range(8):
        same = np.array_equal(out_y[i], masks[i])
        mirrored = np.array_equal(out_y[i], masks[i][:, ::-1])
        assert same or mirrored
        expected = images[i] if same else images[i][:, ::-1]
        np.testing.assert_allclose(out_x[i], tf.cast(expected, tf.float32), atol=1e-3)


def test_real_weizmann_horses_load_and_split():
    root = os.path.join(shared_data_dir(), "weizmann-horses")
    if not os.path.isdir(root):
        pytest.skip(f"real data not found at {root} (set KERAS_CNN_SHARED_DATA)")
    pairs = folder_pairs(root)
    assert len(pairs) == 246
    train, val = split_pairs(pairs, 0.25)
    assert (len(train), len(val)) == (184, 62)
    decoder = folder_mask_decoder([m for _, m in pairs], num_classes=2)
    assert decoder.binary
    x, y = next(iter(make_dataset(val[:4], decoder, (64, 64), 4)))
    assert x.shape == (4, 64, 64, 3) and 0.05 < float(np.mean(y.numpy())) < 0.9


# File names as the file system gives them: bytes that are not UTF-8 come to Python as
# surrogate escapes ("caf\udce9"), which str.encode() and TensorFlow's strings refuse.
FILE_NAMES = [
    ("ascii", [b"img00", b"img01", b"img02", b"img03"]),
    ("utf-8", ["façade".encode(), "日本".encode(), b"img02", b"img03"]),
    ("latin-1", [b"caf\xe9", b"na\xefve", b"img02", b"img03"]),
    ("not-text", [b"\xff\xfe", b"\x80\x81", b"img02", b"\xc3"]),
]


@pytest.mark.parametrize("stems", [s for _, s in FILE_NAMES], ids=[i for i, _ in FILE_NAMES])
def test_file_names_that_are_not_utf8_train_and_evaluate(tmp_path, stems):
    root = make_folder(tmp_path / "d", n=len(stems))
    for i, stem in enumerate(stems):
        for sub, ext in (("images", ".jpg"), ("masks", ".png")):
            os.rename(os.path.join(root, sub, f"img{i:02d}{ext}"),
                      os.path.join(os.fsencode(root), sub.encode(), stem + ext.encode()))
    pairs = folder_pairs(root)
    assert sorted(os.fsencode(os.path.basename(i))[:-4] for i, _ in pairs) == sorted(stems)
    train, val = split_pairs(pairs, 0.25)
    assert len(train) == 3 and len(val) == 1
    check_pairs(pairs, MaskDecoder(binary=True))
    # Training (shuffled, augmented) and evaluation (every pair, in order) read every file.
    (x, y), = list(make_dataset(train, MaskDecoder(binary=True), (16, 16), 3, training=True, augment=Augment()))
    assert x.shape == (3, 16, 16, 3) and set(np.unique(y.numpy())) <= {0, 1}
    x, y = next(iter(make_dataset(pairs, MaskDecoder(binary=True), (16, 16), 4)))
    images, masks = data_lib.load_examples(pairs, MaskDecoder(binary=True), (16, 16))
    np.testing.assert_array_equal(y.numpy(), masks)
