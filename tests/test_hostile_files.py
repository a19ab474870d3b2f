"""Files that parse but should not be believed: one line naming the file, bounded memory, nothing written.

Three classes, a table each:

- **Small on disk, huge once parsed**: pickles of shared references (a CIFAR-10
  batch, a palette), a `.pth` whose tensor strides repeat one stored float, a
  zip bomb inside a `.pth`, a `.keras` padded with zeros. They are read in a
  child process whose address space is capped (`RLIMIT_AS`), so a reader that
  believes a file fails the test instead of the machine.
- **Palettes that parse but make no sense**: values x256, negated, 1e30,
  24 copies of one colour.
- **State that lies**: a backup beyond the run's epochs, a training log of
  other columns or with junk rows, NaN in a JSON record, export metadata that
  belongs to another application or holds impossible values.
"""

import collections
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from keras_cnn import state_files
from keras_cnn.colorization.config import ColorizationConfig
from keras_cnn.config import save_config
from keras_cnn.errors import UserError
from tests.torch_checkpoint_files import Storage, Tensor, legacy_bytes, write_zip

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# === Small on disk, huge once parsed ===

# The child's address space: TensorFlow and Keras load in about 2 GB of it; a believed bomb needs far more.
ADDRESS_SPACE = 3 * 2**30
CHILD = r"""
import json, resource, sys, time, traceback
resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
rows, out = [], {}
for name, kind, path in json.loads(sys.argv[1]):
    start = time.time()
    try:
        if kind == "cifar":
            from keras_cnn.data import cifar10
            cifar10.parse_batch(path)
        elif kind == "palette":
            from keras_cnn.colorization.palette import load_palette
            load_palette(path, allow_pickle=True)
        elif kind == "pth":
            from keras_cnn.weights import load_torch_state_dict
            load_torch_state_dict(path)
        elif kind == "keras":
            from keras_cnn.training.saving import load_model
            load_model(path)
        elif kind == "tar":
            from keras_cnn.data.downloads import safe_extract
            safe_extract(path, path + ".extracted")
        result = {"outcome": "loaded"}
    except BaseException as e:
        result = {"outcome": type(e).__name__, "message": str(e)}
    result["seconds"] = round(time.time() - start, 2)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    out[name] = result
print("RESULTS " + json.dumps(out))
""".replace("ADDRESS_SPACE", str(ADDRESS_SPACE))


def write_tar_bomb(path, size=192 * 2**20):
    """A CIFAR-named tar.gz whose one member is `size` bytes of zeros: a few hundred KB on disk."""
    import io
    import tarfile

    class Zeros(io.RawIOBase):
        left = size

        def readable(self):
            return True

        def readinto(self, buffer):
            n = min(len(buffer), self.left)
            buffer[:n] = bytes(n)
            self.left -= n
            return n

    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = size
        tar.addfile(info, io.BufferedReader(Zeros(), 1 << 20))
    return path


def shared_nested(depth=5, width=100):
    """A list nested `depth` deep, each level `width` references to one list: width**depth numbers, a 1 KB pickle."""
    level = [0.5] * width
    for _ in range(depth - 1):
        level = [level] * width
    return level


def pickle_cycle():
    loop = []
    loop.append(loop)
    return pickle.dumps((loop, 0.05), protocol=2)


def stride0_tensor():
    """{"weight": a 50000 x 50000 float32 tensor of strides (0, 0) over one stored float (10 GB as an array)."""
    return collections.OrderedDict(weight=Tensor(Storage(np.ones(1, np.float32)), 0, (50000, 50000), (0, 0)))


def many_views():
    """4,000 tensors viewing one 0.5 MB storage: 2 GB of arrays from 0.5 MB stored."""
    storage = Storage(np.zeros(2**17, np.float32))
    return collections.OrderedDict((f"w{i}", Tensor(storage, 0, (2**17,), (1,))) for i in range(4000))


def write_pth_zip_bomb(path, mb=192):
    """A zip-layout .pth whose one storage member is `mb` MB of zeros, deflated to about 0.2 MB."""
    n = mb * 2**20 // 4
    body_path = path + ".tmp"
    write_zip(body_path, collections.OrderedDict(weight=Tensor(Storage(np.zeros(1, np.float32), key="0"),
                                                               0, (1,), (1,))))
    with zipfile.ZipFile(body_path) as small:
        body = small.read("archive/data.pkl").replace(b"K\x01", b"J" + struct.pack("<i", n), 1)
    os.remove(body_path)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("archive/data.pkl", body)
        z.writestr("archive/byteorder", "little")
        with z.open("archive/data/0", "w", force_zip64=True) as f:
            for _ in range(mb // 16):
                f.write(bytes(16 * 2**20))
    return path


def write_padded_keras(path, mb=192, member="config.json"):
    """A small genuine .keras whose `member` is padded with `mb` MB (JSON whitespace, or a new member of zeros)."""
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    genuine = path + ".genuine.keras"
    model.save(genuine)
    with zipfile.ZipFile(genuine) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename != member:
                z.writestr(info.filename, data)
                continue
            with z.open(member, "w", force_zip64=True) as f:
                f.write(data)
                for _ in range(mb // 16):
                    f.write(b" " * (16 * 2**20))
        if member not in src.namelist():
            with z.open(member, "w", force_zip64=True) as f:
                for _ in range(mb // 16):
                    f.write(bytes(16 * 2**20))
    os.remove(genuine)
    return path


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


# (id, kind of reader, writer (folder -> path), what the one line says after "PATH: ")
SIZE_CASES = [
    ("cifar-shared-references", "cifar",
     lambda d: write(os.path.join(d, "data_batch_1"),
                     pickle.dumps({b"data": shared_nested(), b"labels": [0] * 10}, protocol=2)),
     "refusing pickle: over 2,000,000 objects and array elements once shared references are counted as copies"),
    ("cifar-shared-array", "cifar",
     lambda d: write(os.path.join(d, "data_batch_2"),
                     pickle.dumps({b"data": [np.zeros(3072, np.uint8)] * 100_000, b"labels": [0] * 10}, protocol=2)),
     "refusing pickle: over 256 MB of data once shared references are counted as copies"),
    ("cifar-declared-length", "cifar",
     lambda d: write(os.path.join(d, "data_batch_3"), b"\x80\x04\x8e" + (2**40).to_bytes(8, "little") + b"abc."),
     "corrupt pickle (UnpicklingError: pickle data was truncated)"),
    ("cifar-empty-array-of-a-huge-shape", "cifar",
     lambda d: write(os.path.join(d, "data_batch_4"),
                     b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nJ\x00\x00\x00\x40\x85C\x01b"
                     b"\x87R."),
     "corrupt pickle (UnpicklingError: an empty array of shape (1073741824,))"),
    ("palette-shared-references", "palette",
     lambda d: write(os.path.join(d, "palette.npy"), pickle.dumps((shared_nested(4, 300), 0.05), protocol=2)),
     "refusing pickle: over 2,000,000 objects and array elements once shared references are counted as copies"),
    ("palette-cycle", "palette", lambda d: write(os.path.join(d, "cycle.npy"), pickle_cycle()),
     "refusing pickle: an object that contains itself"),
    ("pth-stride-0-legacy", "pth", lambda d: write(os.path.join(d, "stride0.pth"), legacy_bytes(stride0_tensor())),
     "its tensors would take 10,000,000,000 bytes from 4 stored ('weight': shape 50000x50000, stride (0, 0))"),
    ("pth-stride-0-zip", "pth", lambda d: write_zip(os.path.join(d, "stride0_zip.pth"), stride0_tensor()),
     "its tensors would take 10,000,000,000 bytes from 4 stored"),
    ("pth-many-views", "pth", lambda d: write_zip(os.path.join(d, "views.pth"), many_views()),
     "its tensors would take 2,097,152,000 bytes from 524,288 stored"),
    ("pth-zip-bomb", "pth", lambda d: write_pth_zip_bomb(os.path.join(d, "bomb.pth")),
     "checkpoint unpacks to 192.0 MB from 0.2 MB on disk (archive/data/0 alone 192.0 MB), over the "),
    ("tar-bomb", "tar", lambda d: write_tar_bomb(os.path.join(d, "cifar-10-python.tar.gz")),
     "archive unpacks to 192.0 MB from 0.2 MB on disk, over the "),
    ("tar-empty", "tar", lambda d: write(os.path.join(d, "empty.tar.gz"), b""),
     "corrupt or truncated archive (file could not be opened successfully)"),
    ("keras-padded-config", "keras", lambda d: write_padded_keras(os.path.join(d, "best.keras")),
     "model file unpacks to 192.0 MB from 0.2 MB on disk (config.json alone 192.0 MB)"),
    ("keras-padded-member", "keras",
     lambda d: write_padded_keras(os.path.join(d, "last.keras"), member="assets/padding.bin"),
     "model file unpacks to 192.0 MB from 0.2 MB on disk (assets/padding.bin alone 192.0 MB)"),
]


@pytest.fixture(scope="module")
def size_results(tmp_path_factory):
    """{id: (path, the child's result)} of every SIZE_CASES row, read in one capped child process."""
    folder = str(tmp_path_factory.mktemp("hostile_sizes"))
    rows = [(name, kind, make(folder)) for name, kind, make, _ in SIZE_CASES]
    # No GPU in the child: a CUDA context reserves more address space than the cap.
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(rows)], capture_output=True, text=True,
                          timeout=600, env=env, cwd=folder)
    line = [x for x in done.stdout.splitlines() if x.startswith("RESULTS ")]
    assert line, f"exit {done.returncode}: {done.stderr[-3000:]}"
    results = json.loads(line[-1][len("RESULTS "):])
    return {name: (path, results[name]) for name, _, path in rows}


@pytest.mark.parametrize("name,expected", [(row[0], row[3]) for row in SIZE_CASES], ids=[row[0] for row in SIZE_CASES])
def test_files_small_on_disk_and_huge_once_parsed_are_refused_in_one_line(size_results, name, expected):
    path, result = size_results[name]
    assert os.path.getsize(path) < 2**20, "the hostile file itself is small"
    assert result["outcome"] == "UserError", result
    message = result["message"]
    assert "\n" not in message and message.startswith(f"{path}: {expected}"), message
    # Refused before the memory is taken: a second, not minutes; no more than the libraries themselves need.
    assert result["seconds"] < 30, result


def test_the_bomb_reader_stays_small(size_results):
    """The whole table ran in one process capped at 3 GB; its peak stays near what TensorFlow itself takes."""
    peak = max(result["peak_rss_mb"] for _, result in size_results.values())
    assert peak < 1500, peak


def test_genuine_files_of_each_kind_still_load(tmp_path):
    """The bounds leave room for what the readers are for: a CIFAR-10-sized batch, tied torch weights."""
    from keras_cnn.data import cifar10, safe_pickle
    from keras_cnn.weights import load_torch_state_dict

    batch = {b"batch_label": b"training batch 1 of 5", b"labels": [i % 10 for i in range(10000)],
             b"data": np.random.RandomState(0).randint(0, 256, (10000, 3072)).astype(np.uint8),
             b"filenames": [b"img_%05d.png" % i for i in range(10000)]}
    images, labels = cifar10.parse_batch(write(str(tmp_path / "data_batch_1"), pickle.dumps(batch, protocol=2)))
    assert images.shape == (10000, 32, 32, 3) and len(labels) == 10000
    assert safe_pickle.measure(batch)[1] > 30_000_000
    storage = Storage(np.arange(6, dtype=np.float32))
    tied = collections.OrderedDict(a=Tensor(storage, 0, (2, 3), (3, 1)), b=Tensor(storage, 0, (3, 2), (1, 3)))
    loaded = load_torch_state_dict(write_zip(str(tmp_path / "tied.pth"), tied))
    np.testing.assert_array_equal(loaded["b"], np.arange(6, dtype=np.float32).reshape(2, 3).T)


# === Palettes that parse but make no sense ===

GOOD_RGB = np.random.RandomState(0).uniform(0, 255 / 256, (24, 3))
GOOD_AB = np.random.RandomState(1).uniform(-80, 80, (12, 2))


def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def _with_copy(colours, i, j):
    colours = colours.copy()
    colours[j] = colours[i]
    return colours


# (id, the file's bytes, what the one line says after "PATH: ")
PALETTE_CASES = [
    ("rgb-x256", _npy(GOOD_RGB * 256), "RGB palette values must lie in 0..1 (uint8 / 256), got "),
    ("rgb-negated", _npy(-GOOD_RGB), "RGB palette values must lie in 0..1 (uint8 / 256), got "),
    ("rgb-1e30", _npy(np.full((24, 3), 1e30)), "RGB palette values must lie in 0..1 (uint8 / 256), got 1e+30..1e+30"),
    ("rgb-24-identical", _npy(np.full((24, 3), 0.5)), "all 24 palette colours are the same (0.5, 0.5, 0.5)"),
    ("rgb-duplicate", _npy(_with_copy(GOOD_RGB, 3, 17)), "palette colours 3 and 17 are the same"),
    ("ab-x256", _npy(GOOD_AB * 256), "ab palette values (CIE Lab a, b) must lie in -128..128, got "),
    ("ab-1e30", _npy(np.full((12, 2), -1e30)), "ab palette values (CIE Lab a, b) must lie in -128..128"),
    ("ab-identical", _npy(np.zeros((12, 2))), "all 12 palette colours are the same (0, 0)"),
    ("course-pickle-x256", pickle.dumps((GOOD_RGB * 256, 0.05), protocol=2),
     "RGB palette values must lie in 0..1 (uint8 / 256), got "),
]


@pytest.mark.parametrize("content,expected", [row[1:] for row in PALETTE_CASES], ids=[row[0] for row in PALETTE_CASES])
def test_palettes_that_make_no_sense_are_refused_in_one_line(tmp_path, content, expected):
    from keras_cnn.colorization.palette import load_palette

    path = write(str(tmp_path / "palette.npy"), content)
    with pytest.raises(UserError) as caught:
        load_palette(path, allow_pickle=True)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: {expected}"), message


def test_the_x256_hint_and_good_palettes(tmp_path):
    from keras_cnn.colorization.palette import load_palette

    with pytest.raises(UserError, match=r"values in 0\.\.255\? this package's RGB palettes hold uint8 / 256"):
        load_palette(write(str(tmp_path / "x256.npy"), _npy(GOOD_RGB * 256)))
    for name, colours in (("rgb.npy", GOOD_RGB), ("ab.npy", GOOD_AB), ("edges.npy", [[0, 0, 0], [1, 1, 1]])):
        loaded = load_palette(write(str(tmp_path / name), _npy(colours)))
        np.testing.assert_allclose(loaded.colours, np.asarray(colours, np.float32))


# === State that lies ===

def run_folder(tmp_path, epochs=3, backup=None, history=None):
    run = tmp_path / "run"
    (run / "backup").mkdir(parents=True)
    save_config(ColorizationConfig(epochs=epochs), str(run / "config.json"), task="colorization")
    if backup is not None:
        (run / "backup" / "w.weights.h5").write_bytes(b"")
        (run / "backup" / "state.json").write_text(json.dumps({"epoch": backup[0], "step": backup[1],
                                                                 "weights": "w.weights.h5"}))
    if history is not None:
        (run / "history.csv").write_bytes(history)
    return run


GOOD_LOG = b"epoch,accuracy,loss,val_accuracy,val_loss\n0,0.1,2.0,0.1,2.1\n1,0.2,1.9,0.2,2.0\n"
REMEDY_BACKUP = "; delete {run}/backup to restart the run from its beginning"
REMEDY_LOG = "; move it away to resume without the log of the earlier epochs"

# (id, backup (epoch, step) or None, history.csv bytes or None, the file named, what the line says after it)
STATE_CASES = [
    ("backup-epoch-999", (999, 0), None, "backup/state.json",
     'backup state says training got to epoch 999, but the run has 3 epoch(s) ("epochs" in {run}/config.json)'
     + REMEDY_BACKUP),
    ("backup-steps-past-the-last-epoch", (3, 5), None, "backup/state.json",
     "backup state says training got to epoch 3, step 5, but the run has 3 epoch(s)"),
    ("log-foreign-header", None, b"name,score\nalice,3\nbob,x\n", "history.csv",
     'training log has no "epoch" column (its columns: name, score)' + REMEDY_LOG),
    ("log-foreign-columns", None, b"epoch,zeta,alpha\n0,1,2\n", "history.csv",
     "training log is not a training log this package wrote (its columns: epoch, zeta, alpha)"),
    ("log-no-loss", None, b"epoch,accuracy\n0,0.5\n", "history.csv",
     "training log is not a training log this package wrote (its columns: epoch, accuracy)"),
    ("log-junk-cell", None, GOOD_LOG + b"2,0.3,junk,0.3,1.8\n", "history.csv",
     'training log line 4: loss "junk" is not a number'),
    ("log-junk-epoch", None, b"epoch,loss\n0,1.0\nten,0.9\n", "history.csv",
     'training log line 3: epoch "ten" is not a whole number'),
    ("log-epochs-out-of-order", None, b"epoch,loss\n0,1.0\n5,0.9\n6,0.8\n", "history.csv",
     "training log line 3: epoch 5 follows epoch 0"),
    ("log-long-row", None, b"epoch,loss\n0,1.0,0.5,0.3,0.2,1,2,3,4,5,6\n1,0.9\n", "history.csv",
     "training log line 2 has more cells than the 2 columns"),
    ("log-short-row-mid-file", None, b"epoch,accuracy,loss\n0,0.5\n1,0.6,0.9\n", "history.csv",
     "training log line 2 has fewer cells than the 3 columns"),
    ("log-column-of-a-metric-name-no-keras-writes", None, b"epoch,loss,loss value\n0,1,2\n", "history.csv",
     'training log has a column "loss value" that is no metric name'),
    ("log-val-without-training", None, b"epoch,loss,val_iou,val_loss\n0,1,2,3\n", "history.csv",
     "training log has val_iou without iou"),
]


@pytest.mark.parametrize("backup,history,named,expected", [row[1:] for row in STATE_CASES],
                         ids=[row[0] for row in STATE_CASES])
def test_state_that_lies_is_refused_before_resuming(tmp_path, backup, history, named, expected):
    run = run_folder(tmp_path, backup=backup, history=history)
    with pytest.raises(UserError) as caught:
        state_files.check_resume(str(run))
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{run}/{named}: {expected.format(run=run)}"), message


def test_honest_state_still_resumes(tmp_path):
    # The backup made after the last epoch (training finished, the backup not yet deleted) is the truth.
    run = run_folder(tmp_path, backup=(3, 0), history=GOOD_LOG + b"2,0.3,1.8,0.3,1.9\n")
    state_files.check_resume(str(run))
    # A log cut short mid-row by a kill, and Keras' "NA" cells of a run without validation.
    (run / "history.csv").write_bytes(b"epoch,loss,val_loss\n0,1.0,NA\n1,nan,NA\n2,0.")
    state_files.check_resume(str(run))
    # Keras logs val_NAME after every NAME when there is no validation split.
    (run / "history.csv").write_bytes(b"epoch,loss,zeta,val_loss,val_zeta\n0,1,2,NA,NA\n")
    state_files.check_resume(str(run))


def test_a_log_of_other_columns_is_refused_before_a_row_is_appended(tmp_path):
    """The CSV logger checks the file's header against the columns it is about to write."""
    run = run_folder(tmp_path, history=b"epoch,loss\n0,1.0\n")
    want = ["epoch", "fg_iou", "loss", "val_fg_iou", "val_loss"]
    with pytest.raises(UserError) as caught:
        state_files.check_history_columns(str(run), want)
    assert str(caught.value) == (f"{run}/history.csv: training log has the columns epoch, loss, but this run logs "
                                 "epoch, fg_iou, loss, val_fg_iou, val_loss" + REMEDY_LOG)
    state_files.check_history_columns(str(run), ["epoch", "loss"])


def test_resume_of_a_lying_backup_is_one_line_and_trains_nothing(tmp_path):
    run = run_folder(tmp_path, backup=(999, 0))
    before = sorted(os.listdir(run))
    done = subprocess.run([sys.executable, "-m", "keras_cnn", "train-colorization", "--run-dir", str(run),
                           "--resume"], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=REPO))
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {run}/backup/state.json: backup state says training "
                                                   "got to epoch 999"), done.stderr
    assert sorted(os.listdir(run)) == before


# NaN and infinity: never read from a JSON record, never written into one.
def test_nan_in_a_json_record_is_refused_naming_the_file(tmp_path):
    record = tmp_path / "int8_finetune.json"
    record.write_text('{"source_run": "runs/x", "epochs": 3, "learning_rate": NaN}')
    with pytest.raises(UserError) as caught:
        state_files.read_object(str(record), "int8 fine-tuning record")
    assert str(caught.value) == (f"{record}: int8 fine-tuning record is not valid JSON (NaN is not a JSON "
                                 "number)")
    record.write_text('{"x": [1, -Infinity]}')
    with pytest.raises(UserError, match="-Infinity is not a JSON number"):
        state_files.read_json(str(record), "record")


@pytest.mark.parametrize("value,place", [
    ({"source": {"int8_finetune": {"learning_rate": float("nan")}}}, '"source"."int8_finetune"."learning_rate"'),
    ({"palette": {"colours": [[0.1, 0.2], [float("inf"), 0.0]]}}, '"palette"."colours"[1][0]'),
])
def test_export_metadata_with_nan_is_refused_not_written(tmp_path, value, place):
    from keras_cnn.export import saved_model

    path = tmp_path / "tflite" / "metadata.json"
    with pytest.raises(UserError) as caught:
        saved_model.write_metadata(str(path), value)
    assert str(caught.value) == (f"{path}: refusing to write export metadata: {place} is not a finite number; "
                                 "JSON has no NaN or infinity")
    assert not path.exists()
    # Measurements write "no value" as null; whatever is written parses as strict JSON.
    text = state_files.json_text({"delta_e": float("nan"), "psnr": 21.5}, "metrics.json", "metrics", nulls=True)
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {"delta_e": None, "psnr": 21.5}


# Export metadata beside a .tflite: checked field by field, and against the model's outputs.
def colour_metadata(**changes):
    meta = {"application": "colorization", "input_size": [16, 16], "decode": "argmax", "temperature": 0.38,
            "receptive_radius": 7, "class_names": [f"colour_{i}" for i in range(5)],
            "palette": {"space": "rgb", "colours": np.linspace(0, 0.9, 15).reshape(5, 3).tolist()},
            "tflite": {"float32": "model_float32.tflite"}}
    meta.update(changes)
    return {k: v for k, v in meta.items() if v is not None}


# (id, metadata.json, what the one line says after "PATH: not usable export metadata: ")
METADATA_CASES = [
    ("colourizer-says-segmentation", colour_metadata(application="segmentation"),
     'says "segmentation" but holds a palette and a colour decoding: it is a colourizer\'s metadata'),
    ("unknown-application", colour_metadata(application="detection"),
     '"application" must be "colorization" or "segmentation", got \'detection\''),
    ("negative-radius", colour_metadata(receptive_radius=-8),
     '"receptive_radius" must be a whole number of pixels >= 0 or null, got -8'),
    ("fractional-radius", colour_metadata(receptive_radius=3.5),
     '"receptive_radius" must be a whole number of pixels >= 0 or null, got 3.5'),
    ("radius-as-text", colour_metadata(receptive_radius="7"),
     '"receptive_radius" must be a whole number of pixels >= 0 or null, got 7'),
    ("input-size-text", colour_metadata(input_size="16x16"), '"input_size" must be two whole numbers >= 1'),
    ("input-size-negative", colour_metadata(input_size=[16, -16]), '"input_size" must be two whole numbers >= 1'),
    ("palette-x256", colour_metadata(palette={"space": "rgb", "colours": (np.linspace(0, 0.9, 15) * 256)
                                              .reshape(5, 3).tolist()}),
     "RGB palette values must lie in 0..1 (uint8 / 256)"),
    ("palette-missing", colour_metadata(palette={"space": "hsv"}), 'says "colorization" but has no palette'),
    ("palette-ragged", colour_metadata(palette={"space": "rgb", "colours": [[0.1, 0.2, 0.3], [0.4]]}),
     '"palette" "colours" must be a list of colours'),
    ("bad-decode", colour_metadata(decode="mode"), '"decode" must be "argmax" or "annealed"'),
    ("annealed-without-temperature", colour_metadata(decode="annealed", temperature=-1),
     '"temperature" must be a finite number > 0, got -1'),
    ("segmenter-one-class", {"application": "segmentation", "input_size": [16, 16], "num_classes": 1},
     '"num_classes" must be a whole number >= 2, got 1'),
    ("segmenter-class-count-as-text", {"application": "segmentation", "input_size": [16, 16], "num_classes": "2"},
     '"num_classes" must be a whole number >= 2, got 2'),
]


@pytest.mark.parametrize("meta,expected", [row[1:] for row in METADATA_CASES], ids=[row[0] for row in METADATA_CASES])
def test_export_metadata_that_makes_no_sense_is_refused_in_one_line(tmp_path, meta, expected):
    from keras_cnn.export import litert_runtime

    path = tmp_path / "metadata.json"
    path.write_text(json.dumps(meta))
    with pytest.raises(UserError) as caught:
        litert_runtime.read_metadata(str(path))
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: not usable export metadata: {expected}"), message
    assert message.endswith("; pass --metadata of the export this model came from")


def tiny_colourizer_tflite(path, size=16, colours=5):
    """A .tflite with a colourizer's outputs ("classes", "logits", "colours") under serving_default."""
    import tensorflow as tf

    class Net(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((1, size, size, 3), tf.uint8, name="images")])
        def serve(self, images):
            x = tf.cast(images, tf.float32) / 255.0
            logits = tf.concat([x[..., :1] * (k + 1) for k in range(colours)], axis=-1)
            return {"classes": tf.cast(tf.argmax(logits, -1), tf.uint8), "logits": logits, "colours": images}

    net = Net()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([net.serve.get_concrete_function()], net)
    with open(path, "wb") as f:
        f.write(converter.convert())
    return str(path)


def test_a_colourizer_file_with_segmentation_metadata_is_refused(tmp_path):
    """Even a segmenter's metadata with the right class count: only a colourizer outputs colours."""
    from keras_cnn.export import litert_runtime

    model = tiny_colourizer_tflite(tmp_path / "model_float32.tflite")
    interpreter = litert_runtime.load_interpreter(model, with_delegates=False)
    assert litert_runtime.check_metadata(interpreter, colour_metadata(), model) is None
    segmenter = {"application": "segmentation", "input_size": [16, 16], "num_classes": 5}
    with pytest.raises(UserError) as caught:
        litert_runtime.check_metadata(interpreter, segmenter, model, "m/metadata.json")
    assert str(caught.value) == (f"m/metadata.json: does not describe {model}: the model is a colourizer (it "
                                 "outputs colours), the metadata says segmentation; pass --metadata of the "
                                 "export this model came from")
