import hashlib
import os
import pickle
import tarfile

import numpy as np
import pytest

from keras_cnn.data import cifar10, safe_pickle
from keras_cnn.data.downloads import safe_extract
from keras_cnn.errors import UserError
from tests.helpers import cifar_batch_bytes, make_cifar_archive, write_images


def md5(path):
    return hashlib.md5(open(path, "rb").read()).hexdigest()


def test_archive_download_verifies_and_parses_class(tmp_path, http_server):
    served = tmp_path / "served"
    served.mkdir()
    made = make_cifar_archive(served / "cifar-10-python.tar.gz")
    url = http_server(served) + "/cifar-10-python.tar.gz"
    train, val = cifar10.load_class("archive", "horse", url=url, md5=md5(served / "cifar-10-python.tar.gz"),
                                    cache_dir=str(tmp_path / "cache"))
    expected_train = np.concatenate([made[f"data_batch_{i}"][0][made[f"data_batch_{i}"][1] == 7]
                                     for i in range(1, 6)])
    np.testing.assert_array_equal(train, expected_train)
    test_images, test_labels = made["test_batch"]
    np.testing.assert_array_equal(val, test_images[test_labels == 7])
    assert train.shape == (10, 32, 32, 3) and train.dtype == np.uint8
    # Second call is served from the cache (server no longer needed).
    train2, _ = cifar10.load_class("archive", 7, url="http://127.0.0.1:9/nothing",
                                   md5=md5(served / "cifar-10-python.tar.gz"),
                                   cache_dir=str(tmp_path / "cache"))
    np.testing.assert_array_equal(train, train2)


def test_pixel_layout_is_r_then_g_then_b_planes(tmp_path):
    img = np.zeros((1, 32, 32, 3), np.uint8)
    img[0, 0, 1] = (10, 20, 30)  # row 0, column 1
    path = tmp_path / "batch"
    path.write_bytes(cifar_batch_bytes(img, [7]))
    raw = pickle.loads(path.read_bytes(), encoding="bytes")[b"data"][0]
    assert (raw[1], raw[1024 + 1], raw[2048 + 1]) == (10, 20, 30)
    images, labels = cifar10.parse_batch(str(path))
    np.testing.assert_array_equal(images[0, 0, 1], [10, 20, 30])
    assert labels.tolist() == [7]


def test_md5_mismatch_is_one_line_error_and_bad_file_removed(tmp_path, http_server):
    served = tmp_path / "served"
    served.mkdir()
    make_cifar_archive(served / "cifar-10-python.tar.gz")
    url = http_server(served) + "/cifar-10-python.tar.gz"
    with pytest.raises(UserError, match="checksum"):
        cifar10.load_class("archive", url=url, md5="0" * 32, cache_dir=str(tmp_path / "cache"))
    assert not (tmp_path / "cache" / "datasets" / "cifar-10-python.tar.gz").exists()


def test_offline_download_names_the_local_flag(tmp_path):
    with pytest.raises(UserError, match="--archive"):
        cifar10.load_class("archive", url="http://127.0.0.1:9/cifar-10-python.tar.gz",
                           cache_dir=str(tmp_path))


def test_local_archive_and_file_url(tmp_path):
    made = make_cifar_archive(tmp_path / "c.tar.gz")
    train, _ = cifar10.load_class("archive", 7, archive=str(tmp_path / "c.tar.gz"), md5=md5(tmp_path / "c.tar.gz"),
                                  cache_dir=str(tmp_path / "cache"))
    assert len(train) == 10
    train2, _ = cifar10.load_class("archive", 0, url=(tmp_path / "c.tar.gz").as_uri(),
                                   md5=md5(tmp_path / "c.tar.gz"), cache_dir=str(tmp_path / "cache2"))
    np.testing.assert_array_equal(train2[0], made["data_batch_1"][0][0])


def test_truncated_archive_fails_cleanly(tmp_path):
    make_cifar_archive(tmp_path / "c.tar.gz")
    data = (tmp_path / "c.tar.gz").read_bytes()
    (tmp_path / "t.tar.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="corrupt or truncated"):
        safe_extract(str(tmp_path / "t.tar.gz"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    assert [p for p in os.listdir(tmp_path) if p.startswith(".tmp")] == []


def test_member_escaping_target_is_refused(tmp_path):
    make_cifar_archive(tmp_path / "evil.tar.gz", extra_members=[("../escaped.txt", b"gotcha")])
    with pytest.raises(UserError, match=r"unsafe archive.*\.\./escaped\.txt"):
        safe_extract(str(tmp_path / "evil.tar.gz"), str(tmp_path / "out"))
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "out").exists()


def test_symlink_pointing_outside_is_refused(tmp_path):
    with tarfile.open(tmp_path / "link.tar", "w") as tar:
        info = tarfile.TarInfo("inside/link")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(UserError, match="points outside"):
        safe_extract(str(tmp_path / "link.tar"), str(tmp_path / "out"))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickle_asking_for_code_is_refused(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}, protocol=2))
    with pytest.raises(UserError, match=r"refusing pickle.*(posix|os)\.system"):
        cifar10.parse_batch(str(path))


def test_safe_pickle_round_trips_plain_data():
    obj = {b"a": [1, 2.5, b"x", "y"], b"arr": np.arange(6, dtype=np.uint8).reshape(2, 3),
           b"t": (np.float64(1.5), None)}
    back = safe_pickle.loads(pickle.dumps(obj, protocol=2))
    np.testing.assert_array_equal(back[b"arr"], obj[b"arr"])
    assert back[b"a"] == obj[b"a"] and back[b"t"][0] == 1.5


def test_batch_with_wrong_layout_is_rejected(tmp_path):
    path = tmp_path / "b"
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [1, 2]}))
    with pytest.raises(UserError, match="expected uint8"):
        cifar10.parse_batch(str(path))


def test_class_names_and_numbers():
    assert cifar10.class_index("horse") == 7 == cifar10.class_index("7") == cifar10.class_index(7)
    with pytest.raises(UserError, match="unknown CIFAR-10 class 'unicorn'"):
        cifar10.class_index("unicorn")
    with pytest.raises(UserError, match="out of range"):
        cifar10.class_index(12)


def test_folder_source_resizes_skips_bad_files_and_splits(tmp_path):
    rng = np.random.RandomState(0)
    folder = write_images(tmp_path / "imgs", rng.randint(0, 256, (9, 48, 64, 3)))
    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.warns(UserWarning, match="broken.jpg: skipped"):
        train, val = cifar10.load_class("folder", data_dir=str(folder), val_fraction=0.3, seed=1)
    assert train.shape == (6, 32, 32, 3) and val.shape == (3, 32, 32, 3)
    with pytest.warns(UserWarning):
        train_b, val_b = cifar10.load_class("folder", data_dir=str(folder), val_fraction=0.3, seed=1)
    np.testing.assert_array_equal(train, train_b)  # deterministic for a seed


def test_max_examples_caps_training_only(tmp_path):
    folder = write_images(tmp_path / "imgs", np.random.RandomState(0).randint(0, 256, (20, 32, 32, 3)))
    train, val = cifar10.load_class("folder", data_dir=str(folder), val_fraction=0.25)
    small, small_val = cifar10.load_class("folder", data_dir=str(folder), val_fraction=0.25, max_examples=4)
    np.testing.assert_array_equal(small, train[:4])
    # The validation split stays whole, so a shortened run is scored on the same images as a full one.
    np.testing.assert_array_equal(small_val, val)


def test_folder_source_keeps_32px_images_exactly(tmp_path):
    imgs = np.random.RandomState(0).randint(0, 256, (4, 32, 32, 3)).astype(np.uint8)
    folder = write_images(tmp_path / "imgs", imgs)
    train, val = cifar10.load_class("folder", data_dir=str(folder), val_fraction=0.0)
    np.testing.assert_array_equal(train, imgs)


def test_empty_or_unreadable_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no image files"):
        cifar10.load_class("folder", data_dir=str(tmp_path / "empty"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_bytes(b"garbage")
    with pytest.warns(UserWarning), pytest.raises(UserError, match="no readable images"):
        cifar10.load_class("folder", data_dir=str(tmp_path / "bad"))
    with pytest.raises(UserError, match="does not exist"):
        cifar10.load_class("folder", data_dir=str(tmp_path / "missing"))


def test_real_horse_folder(shared_data):
    train, val = cifar10.load_class("folder", data_dir=os.path.join(shared_data, "cifar10-horse-train"))
    assert train.shape == (4500, 32, 32, 3) and val.shape == (500, 32, 32, 3)


def test_tfds_source_filters_the_class(monkeypatch):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    images = np.random.RandomState(0).randint(0, 256, (6, 32, 32, 3)).astype(np.uint8)
    labels = np.array([7, 1, 7, 3, 7, 7])
    calls = []

    def fake_load(name, split, data_dir, as_supervised):
        calls.append((name, split, as_supervised))
        return tf.data.Dataset.from_tensor_slices((images, labels))

    monkeypatch.setattr(tfds, "load", fake_load)
    train, val = cifar10.load_class("tfds", "horse")
    np.testing.assert_array_equal(train, images[labels == 7])
    assert calls == [("cifar10", "train", True), ("cifar10", "test", True)]

    def offline(*a, **k):
        raise ConnectionError("no network")

    monkeypatch.setattr(tfds, "load", offline)
    with pytest.raises(UserError, match="offline.*--dataset folder"):
        cifar10.load_class("tfds", 7)
