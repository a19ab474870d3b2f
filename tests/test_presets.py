"""Preset folders: `export --preset-dir` writes a run as keras-hub keeps a model; `from_preset` loads it trained."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from keras_cnn import colorization, presets, segmentation
from keras_cnn.errors import UserError
from keras_cnn.export.preset import write_preset
from keras_cnn.tasks import open_run
from tests.export_helpers import blocky_images, colour_run, segmenter_run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def export(*argv):
    return subprocess.run([sys.executable, "-m", "keras_cnn", "export", *map(str, argv)], capture_output=True,
                          text=True, cwd=REPO, timeout=300)


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr[-2000:]
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


def preset_files(preset_dir):
    return sorted(os.path.relpath(os.path.join(d, f), preset_dir) for d, _, files in os.walk(preset_dir)
                  for f in files)


@pytest.mark.parametrize("application", ["colorization", "segmentation"])
def test_the_command_writes_a_preset_that_from_preset_loads_trained(tmp_path, application):
    photo = blocky_images(1, 64, seed=2)[0][:44, :52]
    preset_dir = tmp_path / "presets" / "horses"
    if application == "colorization":
        run_dir, images = colour_run(str(tmp_path), decode="annealed")
        proc = export("--run-dir", run_dir, "--preset-dir", preset_dir)
        model = colorization.Colorizer.from_preset(preset_dir)
        assert (model.decode, model.temperature) == ("annealed", 0.38)
        np.testing.assert_array_equal(model.palette.colours, open_run(run_dir).assets["palette"].colours)
        # Colours at once, as the run's own prediction gives them.
        np.testing.assert_array_equal(model.colorize(photo), open_run(run_dir).predict(photo))
        expected = ["assets/palette.npy", "config.json", "metadata.json", "model.weights.h5"]
    else:
        run_dir = segmenter_run(str(tmp_path))
        images = blocky_images(3, 32, seed=5)
        proc = export("--run-dir", run_dir, "--preset-dir", preset_dir, "--class-names", "background,horse")
        model = segmentation.DeepLabV3Segmenter.from_preset(preset_dir)
        assert model.class_names == ["background", "horse"]
        np.testing.assert_array_equal(model.segment(photo), open_run(run_dir).predict(photo))
        expected = ["config.json", "metadata.json", "model.weights.h5"]
    assert (proc.returncode, proc.stdout.splitlines()[-1:]) == (0, [f"wrote {preset_dir}"]), proc.stderr[-2000:]
    assert preset_files(preset_dir) == expected
    # The logits of the run's best.keras, exactly.
    np.testing.assert_array_equal(np.asarray(model(images[:3])), np.asarray(open_run(run_dir).model(images[:3])))
    metadata = json.loads((preset_dir / "metadata.json").read_text())
    assert metadata["application"] == application and metadata["format_version"] == presets.FORMAT_VERSION
    assert metadata["source"] == {"run": "run", "checkpoint": "best.keras"}
    assert set(metadata["versions"]) == {"keras_cnn", "keras", "backend"}
    # Nothing in the folder says where it was made: it is meant to be copied.
    for name in ("metadata.json", "config.json"):
        assert str(tmp_path) not in (preset_dir / name).read_text(), name
    # Built beside and renamed: nothing else is left there.
    assert os.listdir(preset_dir.parent) == ["horses"]

    # Moved elsewhere, it still loads; a preset of the other application is refused in one line.
    moved = tmp_path / "moved"
    shutil.move(str(preset_dir), str(moved))
    other = segmentation.DeepLabV3Segmenter if application == "colorization" else colorization.Colorizer
    with pytest.raises(UserError, match=f"a {application} preset, not a") as e:
        other.from_preset(moved)
    assert "\n" not in str(e.value) and str(moved) in str(e.value)
    assert type(model).from_preset(moved).count_params() == model.count_params()


def test_an_existing_folder_is_never_replaced_and_other_export_flags_are_refused(tmp_path):
    run_dir, _ = colour_run(str(tmp_path))
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("keep me")
    # Both refused before TensorFlow is imported: a second each.
    assert_one_line_error(export("--run-dir", run_dir, "--preset-dir", taken), f"--preset-dir {taken}: already exists")
    assert_one_line_error(export("--run-dir", run_dir, "--preset-dir", tmp_path / "new", "--formats", "tflite_int8"),
                          "--preset-dir writes a preset folder only; --formats is for")
    assert sorted(os.listdir(taken)) == ["mine.txt"] and not (tmp_path / "new").exists()
    with pytest.raises(UserError, match="already exists; not replacing it"):
        write_preset(open_run(run_dir), taken)
    assert sorted(os.listdir(taken)) == ["mine.txt"]
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".tmp")]


def test_from_preset_refuses_in_one_line_what_is_not_a_trained_preset(tmp_path):
    run_dir, _ = colour_run(str(tmp_path / "c"))
    good = tmp_path / "good"
    write_preset(open_run(run_dir), good)

    def refusal(preset, *fragments, cls=colorization.Colorizer):
        with pytest.raises(UserError) as e:
            cls.from_preset(preset)
        assert "\n" not in str(e.value), str(e.value)
        for fragment in fragments:
            assert fragment in str(e.value), str(e.value)

    # A recipe is not trained: the refusal names the constructor that builds it.
    refusal("cifar10_unet", "is a training recipe", "Colorizer.from_recipe('cifar10_unet')")
    refusal("weizmann_scratch", "DeepLabV3Segmenter.from_recipe('weizmann_scratch')",
            cls=segmentation.DeepLabV3Segmenter)
    refusal(str(tmp_path / "nowhere"), f"{tmp_path / 'nowhere'}: no such preset folder")
    (tmp_path / "empty").mkdir()
    refusal(tmp_path / "empty", f"{tmp_path / 'empty'}: neither a preset folder")
    tflite = tmp_path / "tflite"  # an export's TFLite folder has a metadata.json too
    tflite.mkdir()
    (tflite / "metadata.json").write_text('{"application": "colorization"}')
    refusal(tflite, f"{tflite / 'metadata.json'}: not a preset's metadata")
    with pytest.raises(UserError, match="checkpoint is for run folders"):
        colorization.Colorizer.from_preset(good, checkpoint="last")

    def broken(name, damage):
        folder = tmp_path / name
        shutil.copytree(good, folder)
        damage(folder)
        return folder

    folder = broken("no_weights", lambda f: os.remove(f / "model.weights.h5"))
    refusal(folder, f"{folder / 'model.weights.h5'}: missing")
    folder = broken("cut_weights", lambda f: (f / "model.weights.h5").write_bytes(
        (good / "model.weights.h5").read_bytes()[:300]))
    refusal(folder, f"{folder / 'model.weights.h5'}: cannot load the weights")
    folder = broken("cut_config", lambda f: (f / "config.json").write_text('{"class_name": "Colori'))
    refusal(folder, f"{folder / 'config.json'}:", "not valid JSON")
    folder = broken("no_metadata", lambda f: os.remove(f / "metadata.json"))
    refusal(folder, f"{folder / 'metadata.json'}: missing")
    folder = broken("no_palette", lambda f: os.remove(f / "assets" / "palette.npy"))
    refusal(folder, f"{folder / 'assets' / 'palette.npy'}: palette file does not exist")
    folder = broken("bad_decoding", lambda f: (f / "metadata.json").write_text(
        (good / "metadata.json").read_text().replace('"argmax"', '"mean"')))
    refusal(folder, f"{folder / 'metadata.json'}: \"decoding\" must be")

    # The recipe constructors build untrained nets from names, not folders.
    with pytest.raises(UserError, match="a folder, not a recipe name"):
        colorization.Colorizer.from_recipe(str(good))
    with pytest.raises(UserError, match="unknown recipe 'horses'"):
        segmentation.DeepLabV3Segmenter.from_recipe("horses")


def test_a_preset_written_under_tensorflow_loads_under_jax(tmp_path):
    pytest.importorskip("jax", reason="the JAX backend needs jax (pip install -e .[jax])")
    run_dir = segmenter_run(str(tmp_path))
    write_preset(open_run(run_dir), tmp_path / "horses")
    images = blocky_images(2, 32, seed=7)
    np.save(tmp_path / "images.npy", images)
    code = ("import sys, keras, numpy as np; from keras_cnn import segmentation; "
            "assert keras.backend.backend() == 'jax'; "
            "model = segmentation.DeepLabV3Segmenter.from_preset(sys.argv[1]); "
            "np.save(sys.argv[3], np.asarray(model(np.load(sys.argv[2]))))")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "horses"), str(tmp_path / "images.npy"),
                           str(tmp_path / "logits.npy")], capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "KERAS_BACKEND": "jax"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), np.asarray(open_run(run_dir).model(images)),
                               atol=1e-5)
