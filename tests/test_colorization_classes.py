"""Class-folder data and the two-stage recipe (pre-train on several classes, then specialise on one).

Tiny generated JPEGs in the `image_dataset_from_directory` layout: one
sub-folder per class, `NNNN.jpg` inside.
"""

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest

from keras_cnn.colorization.config import PRESETS, ColorizationConfig
from keras_cnn.config import resolve
from keras_cnn.data import cifar10
from keras_cnn.errors import UserError
from tests.helpers import write_images

CLASSES = ("deer", "horse", "ship")
PER_CLASS = 8


def _class_images(rng, tint):
    """Smooth images with a class-specific tint, so each class has its own colours."""
    base = rng.randint(0, 256, (PER_CLASS, 4, 4, 3)).astype(np.float64) * 0.5 + np.asarray(tint) * 0.5
    return base.astype(np.uint8).repeat(8, 1).repeat(8, 2)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A class tree (deer/, horse/, ship/) and a flat folder holding the same files as horse/."""
    root = tmp_path_factory.mktemp("classes")
    rng = np.random.RandomState(0)
    for name, tint in zip(CLASSES, ((120, 90, 40), (90, 60, 30), (20, 60, 200))):
        write_images(root / "tree" / name, _class_images(rng, tint), ext=".jpg")
    shutil.copytree(root / "tree" / "horse", root / "horse_flat")
    return str(root / "tree"), str(root / "horse_flat")


def _load(data_dir, classes="", val_fraction=0.25, seed=0):
    return cifar10.load_class("folder", data_dir=data_dir, val_fraction=val_fraction, seed=seed, classes=classes)


def _rows(images):
    return {img.tobytes() for img in images}


# === The class-folder reader and the class filter ===

def test_class_tree_reader_reads_every_class_folder(tree):
    root, _ = tree
    train, val = _load(root, "all")
    assert train.shape == (3 * 6, 32, 32, 3) and val.shape == (3 * 2, 32, 32, 3)
    per_class = {name: _load(os.path.join(root, name)) for name in CLASSES}
    assert _rows(train) == set().union(*(_rows(t) for t, _ in per_class.values()))
    assert _rows(val) == set().union(*(_rows(v) for _, v in per_class.values()))
    # Interleaved, so the first images (the epoch strip, --max-examples) hold every class.
    assert [next(n for n in CLASSES if train[i].tobytes() in _rows(per_class[n][0])) for i in range(3)] \
        == list(CLASSES)
    capped, capped_val = cifar10.load_class("folder", data_dir=root, val_fraction=0.25, classes="all",
                                            max_examples=3)
    np.testing.assert_array_equal(capped, train[:3])
    np.testing.assert_array_equal(capped_val, val)


def test_class_filter(tree):
    root, _ = tree
    horse, horse_val = _load(root, "horse")
    assert len(horse) == 6 and len(horse_val) == 2
    two, _ = _load(root, "horse,deer")
    np.testing.assert_array_equal(two, _load(root, "deer, horse")[0])  # folder order, not the order given
    assert _rows(two) == _rows(_load(root, "deer")[0]) | _rows(horse)
    with pytest.raises(UserError) as e:
        _load(root, "horse,unicorn")
    message = str(e.value)
    assert "\n" not in message and message.startswith(root)
    assert "'unicorn'" in message and "it has: deer, horse, ship" in message


def test_class_tree_and_flat_folder_are_told_apart(tree):
    root, flat = tree
    with pytest.raises(UserError, match=r"holds class folders \(deer, horse, ship\), not images; "
                                        r"pass --classes all"):
        _load(root)
    with pytest.raises(UserError, match="has no class folders"):
        _load(flat, "horse")
    with pytest.raises(UserError, match="pick class folders of --dataset folder"):
        cifar10.load_class("archive", classes="horse")


def test_class_options_are_checked_in_the_config():
    def problems(**fields):
        with pytest.raises(UserError) as e:
            dataclasses.replace(ColorizationConfig(source="folder", data_dir="d"), **fields).validate()
        return str(e.value)

    assert "--classes picks class folders of --dataset folder" in problems(source="archive", classes="horse")
    assert "--classes wants 'all' or class folder names" in problems(classes="horse,,deer")
    assert "--palette-classes needs a class-folder" in problems(palette_classes="all")
    assert "--palette-classes fits a new palette" in problems(classes="all", palette_classes="all",
                                                             base_model="m.keras")


# === The per-class split ===

def test_split_is_per_class_deterministic_and_matches_the_flat_folder(tree):
    root, flat = tree
    _, horse_val = _load(root, "horse")
    _, all_val = _load(root, "all")
    _, two_val = _load(root, "horse,ship")
    # The same horses are held out whatever other classes are read ...
    horse_rows = _rows(_load(root, "horse")[0]) | _rows(horse_val)
    assert {r for r in _rows(all_val) if r in horse_rows} == _rows(horse_val)
    assert {r for r in _rows(two_val) if r in horse_rows} == _rows(horse_val)
    # ... and as from a folder holding the same files, so figures compare with flat-folder runs.
    flat_train, flat_val = _load(flat)
    np.testing.assert_array_equal(flat_val, horse_val)
    np.testing.assert_array_equal(flat_train, _load(root, "horse")[0])
    # Deterministic for a seed; another seed holds out other images.
    np.testing.assert_array_equal(_load(root, "all")[1], all_val)
    assert _rows(_load(root, "horse", seed=1)[1]) != _rows(horse_val)


# === The two-stage recipe ===

def _tiny(data_dir, preset="cifar10_unet", **overrides):
    fields = dict(source="folder", data_dir=data_dir, epochs=1, batch_size=4, num_colours=5, num_filters=4,
                  val_fraction=0.25, model="unet", palette_space="rgb", decode="argmax", augment=False)
    return resolve(ColorizationConfig, PRESETS, preset, {**fields, **overrides})


def _train(cfg, run_dir):
    from keras_cnn.tasks import train

    return train(cfg, str(run_dir), verbose=0, log=lambda *_: None)


@pytest.fixture(scope="module")
def pretrained(tree, tmp_path_factory):
    """Stage 1: one epoch on two classes, the palette fitted on the horses."""
    root, _ = tree
    run_dir = tmp_path_factory.mktemp("stage1") / "all"
    metrics = _train(_tiny(root, "cifar10_all_resunet", classes="deer,horse", palette_classes="horse"), run_dir)
    assert np.isfinite(metrics["validation"]["loss"])
    return run_dir


def test_palette_classes_fit_the_palette_on_those_classes_training_images(tree, pretrained, tmp_path):
    from keras_cnn.colorization.palette import fit_palette

    root, _ = tree
    horse_train, _ = _load(root, "horse")
    np.testing.assert_allclose(np.load(pretrained / "palette.npy"), fit_palette(horse_train, 5, "rgb", 0).colours)
    _train(_tiny(root, classes="deer,horse", max_examples=4), tmp_path / "own")
    deer_horse, _ = cifar10.load_class("folder", data_dir=root, val_fraction=0.25, classes="deer,horse",
                                       max_examples=4)
    np.testing.assert_allclose(np.load(tmp_path / "own" / "palette.npy"),
                               fit_palette(deer_horse, 5, "rgb", 0).colours)


def test_specialise_from_the_base_model_with_its_palette(tree, pretrained, tmp_path):
    from keras_cnn.training import load_model

    root, _ = tree
    base = str(pretrained / "best.keras")
    # A learning rate this small leaves the weights where the base run left them: they came from it.
    cfg = _tiny(root, "cifar10_resunet_from_all", base_model=base, learning_rate=1e-12)
    metrics = _train(cfg, tmp_path / "horse")
    assert np.isfinite(metrics["validation"]["loss"])
    np.testing.assert_array_equal(np.load(tmp_path / "horse" / "palette.npy"), np.load(pretrained / "palette.npy"))
    before, after = load_model(base), load_model(str(tmp_path / "horse" / "best.keras"))
    for name in ("down1", "final"):
        np.testing.assert_allclose(after.net.get_layer(name).kernel.numpy(),
                                   before.net.get_layer(name).kernel.numpy(), atol=1e-6)
    # Validated on the horses alone: the base run's horse validation images.
    from keras_cnn.tasks import open_run

    run = open_run(str(tmp_path / "horse"))
    assert run.config.base_model == os.path.abspath(base) and run.config.classes == "horse"
    np.testing.assert_array_equal(run.task.load_data(run.config)[1], _load(root, "horse")[1])


def test_base_model_mismatches_are_refused(tree, pretrained, tmp_path):
    from keras_cnn.colorization.palette import Palette, save_palette

    root, _ = tree
    base = str(pretrained / "best.keras")
    other = tmp_path / "other.npy"
    save_palette(str(other), Palette(np.linspace(0, 0.9, 15).reshape(5, 3)))
    cases = [
        (dict(palette=str(other)), r"other.npy: not the palette .*best.keras was trained with"),
        (dict(num_colours=6), r"palette has 5 colours but --num-classes is 6; pass --num-classes 5"),
        (dict(num_filters=8), r"the model is a UNet with .* parameters, but --backbone unet --kernel 3 "
                              r"--num-filters 8 builds a UNet with"),
        (dict(seed=1), r"held out validation images with --val-fraction 0.25 --seed 0"),
    ]
    for overrides, message in cases:
        with pytest.raises(UserError, match=message):
            _train(_tiny(root, classes="horse", base_model=base, **overrides), tmp_path / "refused")
        assert not (tmp_path / "refused").exists()  # set-up failures leave no half-made run
    # The same palette named again is fine; a model without its run folder needs --palette.
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(base, alone / "model.keras")
    with pytest.raises(UserError, match=r"model.keras: no palette.npy beside it; pass --palette"):
        _train(_tiny(root, classes="horse", base_model=str(alone / "model.keras")), tmp_path / "refused")
    _train(_tiny(root, classes="horse", base_model=str(alone / "model.keras"),
                 palette=str(pretrained / "palette.npy")), tmp_path / "named")


def test_commands_need_the_base_model_and_evaluate_a_class(tree, pretrained, tmp_path, capsys):
    from keras_cnn.commands import evaluate_colorization, train_colorization

    root, _ = tree
    args = train_colorization.parse_args(["--preset", "cifar10_resunet_from_all", "--data-dir", root,
                                          "--run-dir", str(tmp_path / "run")])
    with pytest.raises(UserError, match="--preset cifar10_resunet_from_all continues a trained colourizer: "
                                        "pass --base-model"):
        train_colorization.run(args)
    evaluate_colorization.run(evaluate_colorization.parse_args(
        ["--run-dir", str(pretrained), "--classes", "horse", "--out", str(tmp_path / "horse.json")]))
    result = json.loads((tmp_path / "horse.json").read_text())
    assert result["images"] == 2  # the horse validation images, not the two classes' four


def test_benchmark_suite_leaves_the_two_stage_presets_to_their_own_commands():
    from keras_cnn.benchmarks import suite

    chosen = suite.default_presets(log=lambda *_: None)
    assert "cifar10_resunet" in chosen
    assert not {"cifar10_all_resunet", "cifar10_resunet_from_all"} & set(chosen)
