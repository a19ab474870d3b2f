"""Oxford 17 Flowers loader on small archives built here in the genuine formats, served over HTTP.

17flowers.tgz holds jpg/image_NNNN.jpg (real JPEGs) and jpg/files.txt;
trimaps.tgz holds trimaps/image_NNNN.png (palette-mode PNGs, as VGG ships
them, plus one RGB PNG) and trimaps/imlist.mat; datasplits.mat is a MATLAB
file written by scipy with 1 x N double vectors trn1..3, val1..3, tst1..3.
"""

import dataclasses
import hashlib
import io
import os
import shutil
import tarfile

import numpy as np
import pytest
import scipy.io
from PIL import Image

from keras_cnn.errors import UserError
from keras_cnn.segmentation import flowers
from keras_cnn.segmentation.config import PRESETS
from keras_cnn.segmentation.metrics import IGNORE_LABEL

N_PHOTOS = 12
WITH_TRIMAP = [1, 2, 3, 5, 6, 8, 9, 11]  # photos 4, 7, 10, 12 have none, as in the real set
RGB_TRIMAP = 5
# The trimaps' palette: background black, flower (128, 0, 0), and two other
# colours the real trimaps use around and beside the flower.
PALETTE = [0, 0, 0, 128, 0, 0, 128, 128, 0, 128, 128, 128]


def trimap_indices(number, h=30, w=40):
    """Palette indices: a flower rectangle (1) ringed by grey (3), a yellow-ish patch (2)."""
    idx = np.zeros((h, w), np.uint8)
    top = 4 + number % 5
    idx[top - 2:top + 14, 8:32] = 3
    idx[top:top + 12, 10:30] = 1
    idx[h - 4:, :6] = 2
    return idx


def trimap_png(number):
    im = Image.fromarray(trimap_indices(number), mode="L").convert("P")
    im.putpalette(PALETTE + [0] * (768 - len(PALETTE)))
    if number == RGB_TRIMAP:
        im = im.convert("RGB")
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def photo_jpeg(number):
    rng = np.random.RandomState(number)
    photo = rng.randint(0, 255, (60, 80, 3)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def add(tar, name, payload):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def splits():
    # Three different random partitions of all photos, 1-based, as VGG's file.
    out = {}
    for n in (1, 2, 3):
        order = np.random.RandomState(n).permutation(np.arange(1, N_PHOTOS + 1))
        out[f"trn{n}"] = order[:6].astype(float)[None, :]
        out[f"val{n}"] = order[6:9].astype(float)[None, :]
        out[f"tst{n}"] = order[9:].astype(float)[None, :]
    return out


def make_server_folder(folder, trimap_extra=()):
    os.makedirs(folder, exist_ok=True)
    with tarfile.open(os.path.join(folder, "17flowers.tgz"), "w:gz") as tar:
        for i in range(1, N_PHOTOS + 1):
            add(tar, f"jpg/image_{i:04d}.jpg", photo_jpeg(i))
        add(tar, "jpg/files.txt", "\n".join(f"image_{i:04d}.jpg" for i in range(1, N_PHOTOS + 1)).encode())
    with tarfile.open(os.path.join(folder, "trimaps.tgz"), "w:gz") as tar:
        for i in WITH_TRIMAP:
            add(tar, f"trimaps/image_{i:04d}.png", trimap_png(i))
        buf = io.BytesIO()
        scipy.io.savemat(buf, {"imlist": np.array(WITH_TRIMAP, float)[None, :]})
        add(tar, "trimaps/imlist.mat", buf.getvalue())
        for name, payload in trimap_extra:
            add(tar, name, payload)
    scipy.io.savemat(os.path.join(folder, "datasplits.mat"), splits())
    return {name: hashlib.md5(open(os.path.join(folder, name), "rb").read()).hexdigest()
            for name in ("17flowers.tgz", "trimaps.tgz", "datasplits.mat")}


def config(url, cache, hashes, **overrides):
    text = ",".join(f"{k}={v}" for k, v in hashes.items())
    return dataclasses.replace(PRESETS["smoke"], dataset="flowers17", data_dir=str(cache), flowers_url=url,
                               flowers_hashes=text, max_examples=0, **overrides)


@pytest.fixture
def served(tmp_path, http_server):
    folder = tmp_path / "server"
    hashes = make_server_folder(str(folder))
    return http_server(str(folder)), hashes, tmp_path / "cache"


def test_download_extract_pair_and_split(served):
    url, hashes, cache = served
    with pytest.warns(UserWarning, match="validation images are also training images"):
        pairs, decoder = flowers.load_flowers17(config(url, cache, hashes))
    s = splits()
    for split, keys in (("train", ("trn1", "trn2", "trn3")), ("validation", ("val1",)), ("test", ("tst1",))):
        wanted = sorted({int(i) for k in keys for i in s[k].ravel()} & set(WITH_TRIMAP))
        assert [int(os.path.basename(p)[6:10]) for p, _ in pairs[split]] == wanted
    for photo, trimap in pairs["train"]:
        assert os.path.basename(photo)[:-4] == os.path.basename(trimap)[:-4]
        assert Image.open(photo).format == "JPEG" and os.path.exists(trimap)
    # Split 1 is clean: no photo in two lists.
    clean, _ = flowers.load_flowers17(config(url, cache, hashes, flowers_split=1))
    assert not set(clean["train"]) & set(clean["validation"])
    assert [int(os.path.basename(p)[6:10]) for p, _ in clean["test"]] == \
        sorted({int(i) for i in s["tst1"].ravel()} & set(WITH_TRIMAP))


def test_second_load_uses_the_cache(served, http_server, tmp_path):
    url, hashes, cache = served
    flowers.load_flowers17(config(url, cache, hashes, flowers_split=2))
    shutil.rmtree(tmp_path / "server")  # the server now answers 404 for everything
    pairs, _ = flowers.load_flowers17(config(url, cache, hashes, flowers_split=2))
    assert pairs["train"]


@pytest.mark.parametrize("number", [1, RGB_TRIMAP])
def test_trimap_to_mask_palette_and_rgb(served, number):
    url, hashes, cache = served
    files = flowers.fetch(str(cache), url, flowers.parse_hashes(",".join(f"{k}={v}" for k, v in hashes.items())))
    path = os.path.join(files.trimaps, f"image_{number:04d}.png")
    assert Image.open(path).mode == ("RGB" if number == RGB_TRIMAP else "P")
    idx = trimap_indices(number)
    plain = flowers.TrimapDecoder()(path)
    np.testing.assert_array_equal(plain, (idx == 1).astype(np.uint8))
    ignoring = flowers.TrimapDecoder(ignore_unlabelled=True)(path)
    expected = np.where(idx == 1, 1, np.where(idx == 0, 0, IGNORE_LABEL))
    np.testing.assert_array_equal(ignoring, expected)
    # Declaring the yellow-ish colour background keeps only the grey ring out.
    custom = flowers.TrimapDecoder(True, flowers.parse_colours("0,0,0;128,128,0"))(path)
    np.testing.assert_array_equal(custom, np.where(idx == 3, IGNORE_LABEL, (idx == 1).astype(np.uint8)))


def test_checksum_mismatch_is_an_error_and_the_file_is_dropped(served):
    url, hashes, cache = served
    bad = dict(hashes, **{"datasplits.mat": "0" * 32})
    with pytest.raises(UserError, match="datasplits.mat: downloaded file failed its checksum"):
        flowers.load_flowers17(config(url, cache, bad))
    assert not os.path.exists(os.path.join(cache, "datasets", "datasplits.mat"))


def test_trimaps_without_a_pinned_hash_are_checked_by_size(served):
    url, hashes, cache = served
    unpinned = {k: v for k, v in hashes.items() if k != "trimaps.tgz"}
    with pytest.raises(UserError, match=r"trimaps.tgz: \d+ bytes, expected 3915787"):
        flowers.load_flowers17(config(url, cache, unpinned))


def test_archive_member_escaping_the_folder_is_refused(tmp_path, http_server):
    folder = tmp_path / "server"
    hashes = make_server_folder(str(folder), trimap_extra=[("../../evil.png", b"x")])
    with pytest.raises(UserError, match=r"trimaps.tgz: unsafe archive, member '../../evil.png'"):
        flowers.load_flowers17(config(http_server(str(folder)), tmp_path / "cache", hashes))
    assert not os.path.exists(tmp_path / "evil.png")


def test_offline_download_is_one_line(tmp_path):
    cfg = config("http://127.0.0.1:9/", tmp_path / "cache", {"trimaps.tgz": "0" * 32})
    with pytest.raises(UserError, match="cannot download http://127.0.0.1:9/17flowers.tgz") as e:
        flowers.load_flowers17(cfg)
    assert "\n" not in str(e.value) and "--data-dir" in str(e.value)


def local_copy(tmp_path):
    """An extracted copy (jpg/, trimaps/, datasplits.mat) that is read in place."""
    root = tmp_path / "local"
    for name in ("17flowers.tgz", "trimaps.tgz"):
        with tarfile.open(tmp_path / "server" / name) as tar:
            tar.extractall(root, filter="data")
    shutil.copy(tmp_path / "server" / "datasplits.mat", root / "datasplits.mat")
    return root


def test_local_copy_is_read_in_place_and_bad_inputs_name_the_file(tmp_path):
    make_server_folder(str(tmp_path / "server"))
    root = local_copy(tmp_path)
    cfg = dataclasses.replace(PRESETS["smoke"], dataset="flowers17", data_dir=str(root), flowers_split=3,
                              flowers_url="http://127.0.0.1:9/")
    pairs, _ = flowers.load_flowers17(cfg)
    assert all(p.startswith(str(root)) for p, _ in pairs["train"])

    os.remove(root / "jpg" / "image_0006.jpg")
    with pytest.raises(UserError, match=r"trimaps/image_0006.png: trimap has no photo"):
        flowers.load_flowers17(cfg)
    shutil.copy(tmp_path / "server" / "17flowers.tgz", tmp_path / "x.tgz")  # keep the archive
    with tarfile.open(tmp_path / "x.tgz") as tar:
        tar.extractall(root, filter="data")

    scipy.io.savemat(root / "datasplits.mat", {"trn1": np.ones((1, 3)), "val1": np.ones((1, 2))})
    with pytest.raises(UserError, match=r"datasplits.mat: missing key\(s\) trn2, trn3, val2"):
        flowers.load_flowers17(cfg)
    (root / "datasplits.mat").write_bytes(b"MATLAB 5.0 MAT-file, but truncated")
    with pytest.raises(UserError, match=r"datasplits.mat: not a readable MATLAB file"):
        flowers.load_flowers17(cfg)


def test_hash_and_colour_flags_are_checked():
    with pytest.raises(UserError, match="flowers_hashes item"):
        flowers.parse_hashes("17flowers.tgz=abc")
    with pytest.raises(UserError, match="trimap colour"):
        flowers.parse_colours("0,0")
    assert flowers.parse_colours("0,0,0; 1,2,3") == [(0, 0, 0), (1, 2, 3)]


def test_training_on_flowers_with_unlabelled_pixels_ignored(served, tmp_path):
    from keras_cnn.tasks import train

    url, hashes, cache = served
    cfg = config(url, cache, hashes, flowers_split=1, ignore_unlabelled=True, epochs=1, batch_size=2,
                 plot_examples=1)
    results = train(cfg, str(tmp_path / "run"), verbose=0, log=lambda *a: None)
    assert results["validation_pairs"] == len(flowers.load_flowers17(cfg)[0]["validation"])
    assert 0.0 <= results["last"]["fg_iou"] <= 1.0
    assert os.path.exists(tmp_path / "run" / "plots" / "epoch_001.png")
