"""The int8 simulation of a colourizer's TFLite file and quantisation-aware fine-tuning through it."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from keras_cnn.benchmarks import int8
from keras_cnn.export import servable_for
from keras_cnn.export.colorization import int8_graph, qat
from keras_cnn.tasks import open_run
from tests.export_helpers import colour_run, segmenter_run


def quiet(*_):
    pass


def test_simulation_quantises_what_the_int8_file_quantises(tmp_path):
    run_dir, images = colour_run(str(tmp_path), num_filters=4)
    model = servable_for(open_run(run_dir)).model
    sim = int8_graph.Int8Simulation()
    sim.calibrate(model, images[:8], (-3.0, 5.0))
    # The course UNet's int8 file rounds: down1, down2, up1 (BatchNorm, ReLU and crop fused), the skip
    # concatenation, up2, the final conv's two parts (up2 and the exact grey image) and their sum, the logits.
    assert len(sim.ranges) == 8
    assert sim.ranges[-1] == (-3.0, 5.0)
    assert all(low <= 0.0 <= high for low, high in sim.ranges)
    # Calibrated, kernels and activations are rounded: close to the float model, not equal; without
    # ranges only the kernels are, which is closer still.
    x = tf.constant(images[:4])
    want = model(x, training=False).numpy()
    simulated = int8_graph.colourizer_logits(model, x, sim).numpy()
    assert 0 < np.abs(simulated - want).max() < np.abs(want).max()
    sim.ranges = None
    unquantised_acts = int8_graph.colourizer_logits(model, x, sim).numpy()
    assert np.abs(unquantised_acts - want).max() < np.abs(simulated - want).max()


@pytest.mark.parametrize("net", ["unet", "resunet"])
def test_simulation_decides_as_the_real_int8_file(tmp_path, net):
    run_dir, _ = colour_run(str(tmp_path), model=net, num_filters=4)
    servable = servable_for(open_run(run_dir))
    result = int8.qat_study(servable, epochs=1, learning_rate=1e-4, consistency=None, check_count=6,
                            representative_count=8, log=quiet)
    assert result["consistency"] == qat.DEFAULT_CONSISTENCY["argmax"] == 2.0
    before, after = result["rows"]
    assert (before["epoch"], after["epoch"]) == (0, 1)
    for row in (before, after):
        assert 0.0 <= row["argmax_agreement"] <= 1.0 and np.isfinite(row["int8_delta_e"])
        # The simulation decides as the converter's int8 file does, up to rare rounding ties.
        assert abs(row["simulated_agreement"] - row["argmax_agreement"]) <= 0.02, row
    assert np.isfinite(after["train_loss"]) and after["train_seconds"] > 0


def test_gradients_reach_every_trainable_variable_through_the_simulation(tmp_path):
    run_dir, images = colour_run(str(tmp_path), model="resunet", num_filters=4)
    model = servable_for(open_run(run_dir)).model
    sim = int8_graph.Int8Simulation()
    sim.calibrate(model, images[:8])
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(int8_graph.colourizer_logits(model, tf.constant(images[:4]), sim)))
    grads = tape.gradient(loss, model.net.trainable_variables)
    missing = [v.path for v, g in zip(model.net.trainable_variables, grads) if g is None]
    assert not missing
    assert all(np.isfinite(g.numpy()).all() for g in grads)


def test_finetuning_moves_the_int8_file_towards_the_float_model(tmp_path):
    # A net fitted for a moment on blocky photos, then fine-tuned: the simulated int8 file agrees more.
    run_dir, images = colour_run(str(tmp_path), num_filters=4, n_images=40)
    servable = servable_for(open_run(run_dir))
    reps = servable.images("train", 16)
    check = servable.images("validation", 10)
    before = qat.simulated_agreement(servable, qat.calibrated_simulation(servable, reps), check)
    rows = qat.finetune(servable, reps, epochs=4, learning_rate=3e-3, consistency=4.0, batch=10, log=quiet)
    after = qat.simulated_agreement(servable, qat.calibrated_simulation(servable, reps), check)
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3, 4]
    assert after > before, (before, after)


def test_the_teacher_is_the_model_as_it_was(tmp_path):
    run_dir, images = colour_run(str(tmp_path), model="resunet", num_filters=4)
    model = open_run(run_dir).model
    teacher = qat.frozen_copy(model)
    x = tf.constant(images[:4])
    np.testing.assert_array_equal(teacher(x, training=False), model(x, training=False))
    model.net.get_layer("final").kernel.assign_add(tf.ones_like(model.net.get_layer("final").kernel))
    assert not np.allclose(teacher(x, training=False), model(x, training=False))


def test_finetune_int8_writes_a_new_run_and_leaves_the_source(tmp_path):
    from keras_cnn.commands import finetune_int8
    from keras_cnn.errors import UserError

    # An annealed-mean colourizer: its int8 logits keep their min / max range, and the default weight is lower.
    run_dir, _ = colour_run(str(tmp_path), num_filters=4, decode="annealed")
    epochs = open_run(run_dir).config.epochs
    with open(os.path.join(run_dir, "history.csv"), "w") as f:  # a finished training run's history
        f.write("epoch,loss\n" + "".join(f"{i},1.0\n" for i in range(epochs)))
    source_bytes = open(os.path.join(run_dir, "best.keras"), "rb").read()
    out = str(tmp_path / "tuned")
    finetune_int8.run(finetune_int8.parse_args(["--run-dir", run_dir, "--out-dir", out, "--epochs", "1",
                                                "--check-count", "6", "--representative-count", "8"]))
    assert sorted(os.listdir(out)) == ["best.keras", "config.json", "history.csv", "int8_finetune.json",
                                       "last.keras", "palette.npy"]
    # With the history the model comes from, --resume cannot train the fine-tuned model over again.
    from keras_cnn.training.run_folder import run_config

    with pytest.raises(UserError, match="run already finished"):
        run_config(out, open_run(out).config, resume=True, chief=True)
    assert open(os.path.join(run_dir, "best.keras"), "rb").read() == source_bytes
    record = json.load(open(os.path.join(out, "int8_finetune.json")))
    assert record["source_run"] == os.path.abspath(run_dir) and record["epochs"] == 1
    assert record["consistency"] == qat.DEFAULT_CONSISTENCY["annealed"] == 0.5
    assert [f["model"] for f in record["figures"]] == ["before", "after"]
    old, new = open_run(run_dir).model, open_run(out).model
    moved = [np.abs(a - b).max() for a, b in zip(old.net.get_weights(), new.net.get_weights())]
    assert max(moved) > 0
    # Export's metadata says where the weights came from.
    # No local path goes into metadata that ships to servers and phones: the run folder's name only.
    assert servable_for(open_run(out)).metadata()["source"] == {
        "run": os.path.basename(out), "checkpoint": "best.keras",
        "int8_finetune": {**{k: record[k] for k in qat.RECORD_SUMMARY}, "source_run": os.path.basename(run_dir)}}
    # The new run is a run: it predicts (and so exports) like any other.
    assert open_run(out).predict(np.zeros((16, 16, 3), np.uint8)).shape == (16, 16, 3)
    with pytest.raises(UserError, match="already exists"):
        finetune_int8.run(finetune_int8.parse_args(["--run-dir", run_dir, "--out-dir", out]))


def test_finetuning_refuses_segmenters(tmp_path):
    from keras_cnn.errors import UserError

    servable = servable_for(open_run(segmenter_run(str(tmp_path))))
    with pytest.raises(UserError, match="for colourizers"):
        qat.check_servable(servable)
