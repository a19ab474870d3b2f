"""A version appears whole or not at all: concurrent exports, killed exports and their leftovers.

The SavedModel and TFLite writers are replaced by light fakes (each writes a
file naming the export that wrote it), so these tests check the layout
protocol of `keras_cnn.export.layout` in seconds; the real writers are tested
in test_export_saved_model.py and test_export_tflite.py.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from keras_cnn.errors import UserError
from keras_cnn.export import layout


class FakeServable:
    images_dir = None
    source = {"run_dir": "fake"}

    def __init__(self, tag):
        self.tag = tag

    def metadata(self):
        return {"application": "colorization", "input_size": [8, 8], "tag": self.tag}

    def images(self, split, count):
        return np.zeros((1, 8, 8, 3), np.uint8)

    def check_set(self, count):
        return self.images("validation", count), None


@pytest.fixture
def fake_writers(monkeypatch):
    """Fake writers; `during_write[0]`, if set, runs while a SavedModel is being written."""
    from keras_cnn.export import saved_model, tflite

    during_write = [None]

    def write_saved_model(servable, path):
        os.makedirs(path)
        with open(os.path.join(path, "saved_model.pb"), "w") as f:
            f.write(servable.tag)
        if during_write[0]:
            hook, during_write[0] = during_write[0], None
            hook()

    def export_tflite(servable, variants, out_dir, name, *args, **kwargs):
        reports = {}
        for v in variants:
            with open(os.path.join(out_dir, f"{name}_{v}.tflite"), "w") as f:
                f.write(servable.tag)
            reports[v] = {"file": f"{name}_{v}.tflite"}
        return reports

    monkeypatch.setattr(saved_model, "write_saved_model", write_saved_model)
    monkeypatch.setattr(saved_model, "check_saved_model",
                        lambda *a, **k: {"max_abs_diff_probabilities": {"probabilities": 0.0}, "images": 1})
    monkeypatch.setattr(tflite, "export_tflite", export_tflite)
    monkeypatch.setattr(tflite, "metadata",
                        lambda servable, reports: {"tflite": {v: r["file"] for v, r in reports.items()}})
    return during_write


def quiet(*args):
    pass


def read(path):
    with open(path) as f:
        return f.read()


def test_two_exports_at_once_each_publish_a_whole_version(tmp_path, fake_writers):
    """Export A (SavedModel + TFLite) is mid-write when B (TFLite only) starts: B never mixes into A's version."""
    out = str(tmp_path / "exported_models")
    seen = {}

    def export_b_while_a_writes():
        # A has reserved version 1 and is building it: nothing of it is visible yet.
        seen["visible_while_building"] = sorted(n for n in os.listdir(os.path.join(out, "unet"))
                                                if not n.startswith("."))
        with pytest.raises(UserError, match=r"\.v1\.lock: version 1 of model 'unet' is being exported by "
                                            r"another process \(pid \d+ on .*\); leave out --version"):
            layout.export_model(FakeServable("B"), out, "unet", ("tflite_float32",), version=1, log=quiet)
        with pytest.raises(UserError, match="version 1 of model 'unet' is being exported"):
            layout.check_version_free(out, "unet", ("tflite_float32",), 1)
        seen["b"] = layout.export_model(FakeServable("B"), out, "unet", ("tflite_float32",), log=quiet)

    fake_writers[0] = export_b_while_a_writes
    a = layout.export_model(FakeServable("A"), out, "unet", ("saved_model", "tflite_float32"), log=quiet)
    assert seen["visible_while_building"] == []
    assert a["version"] == 1 and seen["b"]["version"] == 2
    # Version 1 is all A's, version 2 all B's; B wrote no SavedModel, so TF Serving's version stays 1.
    assert read(tmp_path / "exported_models/unet/1/saved_model.pb") == "A"
    assert read(tmp_path / "exported_models/unet/tflite/1/unet_float32.tflite") == "A"
    assert json.loads(read(tmp_path / "exported_models/unet/tflite/1/metadata.json"))["tag"] == "A"
    assert read(tmp_path / "exported_models/unet/tflite/2/unet_float32.tflite") == "B"
    assert json.loads(read(tmp_path / "exported_models/unet/tflite/2/metadata.json"))["version"] == 2
    # No reservation or build folder left behind.
    assert sorted(os.listdir(tmp_path / "exported_models/unet")) == ["1", "tflite"]
    assert sorted(os.listdir(tmp_path / "exported_models/unet/tflite")) == ["1", "2"]
    # A version whose TFLite half exists is taken for a SavedModel too.
    with pytest.raises(UserError, match="tflite/2: version 2 of model 'unet' already exists"):
        layout.check_version_free(out, "unet", ("saved_model",), 2)


def test_many_reservations_at_once_get_distinct_versions(tmp_path):
    out = str(tmp_path / "exported_models")
    os.makedirs(os.path.join(out, "m", "3"))  # a published version
    got, errors = [], []

    def reserve():
        try:
            got.append(layout.reserve_next_version(out, "m")[0])
        except Exception as e:  # collected for the assertion below
            errors.append(e)

    threads = [threading.Thread(target=reserve) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and sorted(got) == list(range(4, 12))
    assert layout.reserved_versions(out, "m") == list(range(4, 12))
    assert layout.next_version(out, "m") == 12


def test_failure_after_reserving_releases_the_version(tmp_path, fake_writers):
    out = str(tmp_path / "exported_models")

    def broken():
        raise UserError("converter exploded")

    fake_writers[0] = broken
    with pytest.raises(UserError, match="converter exploded"):
        layout.export_model(FakeServable("A"), out, "unet", ("saved_model", "tflite_float16"), log=quiet)
    assert not os.path.exists(out)
    assert layout.export_model(FakeServable("A"), out, "unet", ("saved_model",), log=quiet)["version"] == 1


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def leave(path, pid, old=True, files=(), host=None):
    """A leftover: a folder (with `files`) or, for a `.lock` path, a lock file, owned by `pid`."""
    owner = {"pid": pid, "host": host or socket.gethostname(), "started": "then"}
    if path.endswith(".lock"):
        with open(path, "w") as f:
            json.dump(owner, f)
    else:
        os.makedirs(path)
        with open(os.path.join(path, layout.OWNER_FILE), "w") as f:
            json.dump(owner, f)
        for name in files:
            os.makedirs(os.path.dirname(os.path.join(path, name)), exist_ok=True)
            with open(os.path.join(path, name), "w") as f:
                f.write("left")
    if old:
        stamp = time.time() - layout.STALE_SECONDS - 60
        os.utime(path, (stamp, stamp))


def test_leftovers_of_killed_exports_are_cleaned_or_rolled_forward(tmp_path, fake_writers):
    out = tmp_path / "exported_models"
    unet = out / "unet"
    os.makedirs(unet / "1")
    os.makedirs(unet / "tflite")
    gone = dead_pid()
    # Killed mid-build of version 2: an incomplete build folder and its lock.
    leave(str(unet / f".tmp-{gone}-aaaaaaaa-v2"), gone, files=["saved_model/saved_model.pb"])
    leave(str(unet / ".v2.lock"), gone)
    # Killed between the two renames of version 3: TFLite published, the SavedModel still in the build.
    os.makedirs(unet / "tflite" / "3")
    leave(str(unet / f".tmp-{gone}-bbbbbbbb-v3"), gone, files=["saved_model/saved_model.pb", "COMPLETE"])
    leave(str(unet / ".v3.lock"), gone)
    # A temporary folder of the older atomic writer (pid in its name, no owner record).
    os.makedirs(unet / "tflite" / f".tmp-{gone}-cccccccc-4")
    stamp = time.time() - layout.STALE_SECONDS - 60
    os.utime(unet / "tflite" / f".tmp-{gone}-cccccccc-4", (stamp, stamp))
    # Not stale: a running export (this process), a dead one from minutes ago, one from another host.
    leave(str(unet / f".tmp-{os.getpid()}-dddddddd-v5"), os.getpid())
    leave(str(unet / ".v5.lock"), os.getpid())
    leave(str(unet / f".tmp-{gone}-eeeeeeee-v6"), gone, old=False)
    leave(str(unet / ".v6.lock"), gone, old=False)
    leave(str(unet / f".tmp-{gone}-ffffffff-v7"), gone, host="elsewhere")
    leave(str(unet / ".v7.lock"), gone, host="elsewhere")

    logged = []
    summary = layout.export_model(FakeServable("new"), str(out), "unet", ("saved_model",), log=logged.append)
    assert f"removed {unet / f'.tmp-{gone}-aaaaaaaa-v2'} (left by a killed export)" in logged
    assert "published version 3 of 'unet' left complete by a killed export" in logged
    assert "released version 2 of 'unet', reserved by a killed export" in logged
    assert read(unet / "3" / "saved_model.pb") == "left"
    assert os.path.isdir(unet / "tflite" / "3")
    # Version 2 is free again but the next one is above every published or live reservation.
    assert summary["version"] == 8
    assert sorted(os.listdir(unet)) == sorted(
        ["1", "3", "8", "tflite", f".tmp-{os.getpid()}-dddddddd-v5", ".v5.lock",
         f".tmp-{gone}-eeeeeeee-v6", ".v6.lock", f".tmp-{gone}-ffffffff-v7", ".v7.lock"])
    assert sorted(os.listdir(unet / "tflite")) == ["3"]
    assert not layout.is_stale(str(unet / ".v5.lock"))
    assert layout.is_stale(str(unet / ".v7.lock"), now=time.time() + layout.FOREIGN_STALE_SECONDS)


def _writes_to_a_full_disk(servable, path):
    # The real error TensorFlow raises when a write meets a full disk (/dev/full answers every
    # write with ENOSPC): a ResourceExhaustedError, which was once reported as "out of memory".
    import tensorflow as tf

    os.makedirs(path)
    tf.io.write_file("/dev/full", tf.constant(b"x" * 4096))


def _unnamed_enospc(*args, **kwargs):
    import errno

    raise OSError(errno.ENOSPC, "No space left on device")  # as a failed write() deep in a library


# (id, writer to replace, the fake, what the one line must start with: {out} is the export root)
FULL_DISK_EXPORTS = [
    ("saved-model-tensorflow", "saved_model.write_saved_model", _writes_to_a_full_disk, "/dev/full: "),
    ("tflite-write", "tflite.export_tflite", _unnamed_enospc, "{out}/unet: "),
]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("writer,fake,where", [row[1:] for row in FULL_DISK_EXPORTS],
                         ids=[row[0] for row in FULL_DISK_EXPORTS])
def test_a_full_disk_during_export_is_one_line_naming_the_file(tmp_path, fake_writers, monkeypatch, writer,
                                                                fake, where):
    from keras_cnn import cli
    from keras_cnn.export import saved_model, tflite

    module, name = writer.split(".")
    monkeypatch.setattr({"saved_model": saved_model, "tflite": tflite}[module], name, fake)
    out = str(tmp_path / "exported_models")
    with pytest.raises(Exception) as caught:
        layout.export_model(FakeServable("A"), out, "unet", ("saved_model", "tflite_float16"), log=quiet)
    line = cli.error_line(caught.value)
    assert line == (where.format(out=out) + "no space left on device; free some space there, or write somewhere "
                    "else, and run the command again"), line
    assert not os.path.exists(out)  # nothing of the version, no lock, no build folder
