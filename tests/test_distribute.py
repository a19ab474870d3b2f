"""Strategies, TF_CONFIG, sharding, synchronized BatchNorm, mixed precision; MirroredStrategy parity."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cnn import distribute, training
from keras_cnn.colorization.config import PRESETS, ColorizationConfig
from keras_cnn.colorization.models import build_model
from keras_cnn.colorization.pipeline import PixelCrossEntropy
from keras_cnn.config import resolve
from keras_cnn.errors import UserError
from tests.helpers import REPO


def tf_config(task_type="worker", index=0, chief=False, workers=2):
    cluster = {"worker": [f"127.0.0.1:{2000 + i}" for i in range(workers)]}
    if chief:
        cluster["chief"] = ["127.0.0.1:1999"]
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


@pytest.mark.parametrize("config, chief", [
    (None, True),
    (tf_config("worker", 0), True),
    (tf_config("worker", 1), False),
    (tf_config("chief", 0, chief=True), True),
    (tf_config("worker", 0, chief=True), False),
    (tf_config("evaluator", 0, chief=True).replace('"chief"', '"evaluator"'), False),
    (json.dumps({"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}}), True),
])
def test_is_chief_from_tf_config(monkeypatch, config, chief):
    if config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", config)
    assert distribute.is_chief() is chief


@pytest.mark.parametrize("config, message", [
    ("{not json", "TF_CONFIG is not valid JSON"),
    (json.dumps({"cluster": {"worker": ["a:1", "b:2"]}}), 'no "task"'),
    (tf_config("worker", 5), "task worker:5 is not in its cluster"),
    (json.dumps({"cluster": {"worker": "a:1,b:2"}, "task": {"type": "worker", "index": 0}}), "lists"),
])
def test_bad_tf_config_is_one_line_error(monkeypatch, config, message):
    monkeypatch.setenv("TF_CONFIG", config)
    with pytest.raises(UserError, match=message):
        distribute.get_strategy("auto")


def test_strategy_choice_errors(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(UserError, match="unknown strategy 'mirror'"):
        distribute.get_strategy("mirror")
    with pytest.raises(UserError, match="needs TF_CONFIG"):
        distribute.get_strategy("multi_worker")
    # No GPU here: auto is the default strategy, one replica.
    assert distribute.get_strategy("auto") is tf.distribute.get_strategy()
    assert distribute.get_strategy("one_device").num_replicas_in_sync == 1
    monkeypatch.setenv("TF_CONFIG", tf_config("worker", 1))
    # Every machine would train alone and write the same run folder.
    with pytest.raises(UserError, match="trains on one machine"):
        distribute.get_strategy("default")


def test_auto_shard_policy_is_set_on_purpose():
    ds = tf.data.Dataset.range(8).batch(2)
    policy = lambda d: d.options().experimental_distribute.auto_shard_policy  # noqa: E731
    assert policy(ds) == tf.data.experimental.AutoShardPolicy.AUTO
    assert policy(distribute.set_auto_shard_policy(ds)) == tf.data.experimental.AutoShardPolicy.DATA
    # `fit` gives DATA to a dataset left at AUTO and keeps a policy a pipeline chose.
    assert policy(training.loop._shard_on_purpose(ds)) == tf.data.experimental.AutoShardPolicy.DATA
    by_file = distribute.set_auto_shard_policy(ds, "file")
    assert policy(training.loop._shard_on_purpose(by_file)) == tf.data.experimental.AutoShardPolicy.FILE
    with pytest.raises(ValueError, match="unknown auto-shard policy"):
        distribute.set_auto_shard_policy(ds, "rows")


def test_sync_batchnorm_sets_every_bn_layer():
    model = build_model("unet", num_filters=4, num_colours=3)
    n = distribute.sync_batchnorm(model)
    bns = [l for l in model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
    assert n == len(bns) == 4 and all(l.synchronized for l in bns)
    distribute.sync_batchnorm(model, False)
    assert not any(l.synchronized for l in bns)


def test_setup_runtime_logs_batch_and_learning_rate_rule():
    cfg = resolve(ColorizationConfig, PRESETS, "cifar10_unet",
                  dict(strategy="default", batch_size=16, learning_rate=0.01, lr_scaling="linear"))
    lines = []
    runtime = training.setup_runtime(cfg, lines.append)
    assert (runtime.replicas, runtime.global_batch, runtime.learning_rate, runtime.chief) == (1, 16, 0.01, True)
    assert "global batch 16 x 1 = 16" in lines[0] and "(linear scaling) = 0.01" in lines[0]
    assert "precision float32" in lines[0] and "XLA off" in lines[0]


def test_cpu_bfloat16_features_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_tile amx_bf16\n\n"
                       "processor\t: 1\nflags\t\t: fpu avx512f avx512_bf16 amx_tile amx_bf16\n")
    assert training.runtime.cpu_bfloat16_features(str(cpuinfo)) == ("avx512_bf16", "amx_bf16")
    cpuinfo.write_text("flags\t\t: fpu sse avx2 avx512f avx512_vnni\n")
    assert training.runtime.cpu_bfloat16_features(str(cpuinfo)) == ()
    assert training.runtime.cpu_bfloat16_features(str(tmp_path / "missing")) == ()


def test_runtime_log_says_whether_onednn_is_on(monkeypatch):
    cfg = resolve(ColorizationConfig, PRESETS, "cifar10_unet", dict(strategy="default"))
    assert training.runtime.onednn_enabled() in (True, False)  # this TensorFlow can say
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    for enabled, expected in ((True, "; oneDNN on"), (False, "TF_ENABLE_ONEDNN_OPTS=1 may train faster")):
        monkeypatch.setattr(training.runtime, "onednn_enabled", lambda enabled=enabled: enabled)
        lines = []
        training.setup_runtime(cfg, lines.append)
        assert lines[0].endswith(expected) if enabled else expected in lines[0]


def test_mixed_bfloat16_log_names_the_cpu_support(monkeypatch):
    cfg = resolve(ColorizationConfig, PRESETS, "cifar10_unet", dict(strategy="default", mixed_precision=True))
    previous = keras.mixed_precision.global_policy()
    try:
        for features, expected in ((("amx_bf16",), "mixed_bfloat16 (amx_bf16 on this CPU)"),
                                   ((), "WARNING: this CPU has no avx512_bf16 or amx_bf16")):
            monkeypatch.setattr(training.runtime, "cpu_bfloat16_features", lambda features=features: features)
            lines = []
            training.setup_runtime(cfg, lines.append)
            assert expected in lines[0]
    finally:
        keras.mixed_precision.set_global_policy(previous)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_keeps_logits_and_loss_float32(policy):
    from keras_cnn.segmentation.deeplab_v3 import DeepLabV3Segmenter
    from keras_cnn.segmentation.registry import make_backbone

    previous = keras.mixed_precision.global_policy()
    try:
        if policy == "mixed_bfloat16":
            # What setup_runtime picks on a machine without a GPU.
            cfg = resolve(ColorizationConfig, PRESETS, "cifar10_unet",
                          dict(strategy="default", mixed_precision=True))
            training.setup_runtime(cfg, lambda *_: None)
            assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
        else:
            keras.mixed_precision.set_global_policy(policy)
        compute = policy.split("_")[1]
        rng = np.random.RandomState(0)
        models = [(build_model("unet", num_filters=4, num_colours=5), PixelCrossEntropy(), 1, 5)]
        if policy == "mixed_bfloat16":  # float16 convolutions are slow on CPU: one model is enough
            models.append((DeepLabV3Segmenter(make_backbone("tiny", 32, output_stride=8), 2, aspp_channels=8),
                           keras.losses.SparseCategoricalCrossentropy(from_logits=True), 3, 2))
        for model, loss, channels, classes in models:
            model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
            x = rng.rand(4, 32, 32, channels).astype("float32")
            y = rng.randint(0, classes, (4, 32, 32))
            assert model.layers[2].compute_dtype == compute  # the body runs in low precision
            assert model(x).dtype == "float32"
            # float16 needs loss scaling; Keras adds it at compile.
            assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == (policy == "mixed_float16")
            losses = [float(model.train_on_batch(x, y)) for _ in range(2)]
            assert np.all(np.isfinite(losses)), losses
    finally:
        keras.mixed_precision.set_global_policy(previous)


def test_mirrored_two_cpus_matches_default_strategy(tmp_path):
    """Two replicas on one global batch train exactly like one device (colourizer and segmenter)."""
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tests", "mirrored_worker.py"), str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["replicas"] == 2 and [d[-5:] for d in result["devices"]] == ["CPU:0", "CPU:1"]
    for name in ("colourizer", "segmenter"):
        r = result[name]
        assert r["initial_diff"] == 0.0
        assert r["moved"] > 0.05, r  # training did change the weights
        assert r["final_diff"] < 1e-5, (name, r)
    # Without synchronized BatchNorm each replica normalises its half batch:
    # the same check then fails by orders of magnitude.
    assert result["colourizer"]["final_diff_unsynced_bn"] > 1e-3
    assert result["xla_error"] == ("--jit-compile with 2 CPU replicas: XLA cannot compile collective ops "
                                   "on CPU; train with one replica or without --jit-compile")
