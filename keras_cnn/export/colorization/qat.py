"""Quantisation-aware fine-tuning: a colourizer's weights tuned so its int8 file decides as it does.

Post-training int8 leaves a trained colourizer's file at 88-94% argmax
agreement with its Keras model (`docs/TFLITE.md`); about two thirds of the
loss is activation rounding. `finetune` trains the model for a few epochs
through `int8_graph.Int8Simulation` (the int8 file's computation in float,
straight-through gradients; BatchNorm statistics frozen, as the file folds
them), minimising two cross-entropies over the run's training images,
randomly flipped as in training:

- the float model's logits against its own softmax before fine-tuning
  (self-distillation: the Keras model keeps its colours), plus
- `consistency` times the simulated int8 logits against the float model's
  current argmax: the int8 file should decide as the float model does
  (default by decoding, `DEFAULT_CONSISTENCY`).

The activation ranges follow the weights: they are re-calibrated at the
start of each epoch on the images export calibrates on, as export will.
Afterwards the Keras model, its SavedModel and every TFLite file carry the
same new weights (`keras-cnn finetune-int8` writes them as a new run).
"""

import os
import shutil
import time

import numpy as np

from keras_cnn.errors import UserError

# TensorFlow is imported inside the functions: the commands read the defaults below before
# they import it (`--help` answers at once).

RECORD_FILE = "int8_finetune.json"
# What export's metadata repeats of the record ("source" -> "int8_finetune").
RECORD_SUMMARY = ("source_run", "source_checkpoint", "epochs", "learning_rate", "consistency")
DEFAULT_EPOCHS = 3
DEFAULT_LEARNING_RATE = 1e-4
# By decoding. An argmax colourizer shows only the decisions, so the int8 term can weigh more. An
# annealed-mean one shows the whole distribution, which the int8 term's hard targets sharpen: at 2 the
# best colourizer's delta E rose 10% (99.7% agreement); at 0.5 it moved 0.3% (98.1%). docs/TFLITE.md.
DEFAULT_CONSISTENCY = {"argmax": 2.0, "annealed": 0.5}


def default_consistency(servable):
    return DEFAULT_CONSISTENCY["argmax" if servable.decided_by_argmax else "annealed"]


def check_servable(servable):
    """A `UserError` unless `servable` is a colourizer whose int8 graph can be simulated."""
    from keras_cnn.export.colorization import int8_graph

    if servable.application != "colorization":
        raise UserError("quantisation-aware fine-tuning is for colourizers; a segmenter's int8 file already "
                        "keeps its decisions (docs/TFLITE.md)")
    if not int8_graph.supported(servable.model):
        raise UserError("quantisation-aware fine-tuning needs a grey-input colourizer "
                        "(not --downsize-input super-resolution)")


def logits_range(servable, representative):
    """The logits' int8 range export will use: the argmax range for argmax decoders, else min / max."""
    from keras_cnn.export import tflite

    return tflite.calibration_logit_range(servable, representative) if servable.decided_by_argmax else None


def calibrated_simulation(servable, representative):
    """An `Int8Simulation` of the servable's current weights, calibrated as export calibrates."""
    from keras_cnn.export.colorization import int8_graph

    sim = int8_graph.Int8Simulation()
    sim.calibrate(servable.model, representative, logits_range(servable, representative))
    return sim


def simulated_agreement(servable, sim, images, batch=100):
    """Fraction of pixels where the simulated int8 argmax equals the Keras model's, on uint8 `images`."""
    import tensorflow as tf

    from keras_cnn.export.colorization import int8_graph

    same = 0
    for i in range(0, len(images), batch):
        x = tf.constant(images[i:i + batch])
        want = tf.argmax(servable.model(x, training=False), -1)
        got = tf.argmax(int8_graph.colourizer_logits(servable.model, x, sim), -1)
        same += int(tf.reduce_sum(tf.cast(tf.equal(got, want), tf.int32)))
    return same / float(np.prod(np.shape(images)[:3]))


def frozen_copy(model):
    """A copy of `model` with its current weights, which later training of `model` does not change."""
    copy = type(model).from_config(model.get_config())
    copy.set_weights(model.get_weights())
    copy.trainable = False
    return copy


def finetune(servable, representative, epochs=DEFAULT_EPOCHS, learning_rate=DEFAULT_LEARNING_RATE,
             consistency=None, batch=100, seed=0, log=print, after_epoch=None):
    """Fine-tunes `servable.model` in place; returns one row per epoch (loss, seconds).

    `representative`: the uint8 images export will calibrate int8 on.
    `consistency`: None takes `default_consistency`.
    `after_epoch(epoch)`, if given, is called after each epoch (and with 0
    before the first) and its dict joins that epoch's row.
    """
    import keras
    import tensorflow as tf

    from keras_cnn.export.colorization import int8_graph

    check_servable(servable)
    if consistency is None:
        consistency = default_consistency(servable)
    model = servable.model
    train = servable.images("train", 10 ** 9)
    if not len(train):
        raise UserError("quantisation-aware fine-tuning needs the run's training images; none were found")
    # The teacher: a copy of the model before fine-tuning (its probabilities of the flipped
    # images, computed as needed, so memory does not grow with the training set).
    teacher = frozen_copy(model)
    variables = model.net.trainable_variables
    optimizer = keras.optimizers.Adam(learning_rate)

    def cross_entropy(labels, logits):
        return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels, logits))

    def step(sim, images):
        targets = tf.nn.softmax(teacher(images, training=False))
        with tf.GradientTape() as tape:
            exact = model(images, training=False)
            loss = cross_entropy(targets, exact)
            if consistency:
                simulated = int8_graph.colourizer_logits(model, images, sim)
                decided = tf.one_hot(tf.argmax(exact, -1), exact.shape[-1])
                loss += consistency * cross_entropy(tf.stop_gradient(decided), simulated)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    rows = [{"epoch": 0, **(after_epoch(0) if after_epoch else {})}]
    rng = np.random.RandomState(seed)
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        # Re-calibrated to the current weights; a new trace takes the ranges in as constants.
        sim = calibrated_simulation(servable, representative)
        traced = tf.function(lambda x: step(sim, x))
        order, losses = rng.permutation(len(train)), []
        for i in range(0, len(train), batch):
            images = train[np.sort(order[i:i + batch])]
            flip = rng.rand(len(images)) < 0.5  # the horizontal flips training used
            images[flip] = images[flip, :, ::-1]
            losses.append(float(traced(tf.constant(images))))
        row = {"epoch": epoch, "train_loss": float(np.mean(losses)), "train_seconds": time.perf_counter() - start}
        if after_epoch:
            row.update(after_epoch(epoch))
        log(f"epoch {epoch}/{epochs}: loss {row['train_loss']:.4f} ({row['train_seconds']:.0f} s)")
        rows.append(row)
    return rows


FIGURE_COLUMNS = [("model", "model", None), ("Keras delta E (held-out)", "keras_delta_e", ".3f"),
                  ("simulated int8 argmax agreement", "simulated_int8_agreement", lambda v: f"{100 * v:.2f}%")]


def figures(servable, check, truth, representative):
    """The Keras model's mean delta E on `check` and its simulated int8 file's argmax agreement."""
    import tensorflow as tf

    reference = {k: v.numpy() for k, v in servable.reference_outputs(tf.constant(check)).items()}
    sim = calibrated_simulation(servable, representative)
    return {"keras_delta_e": servable.score(reference, check, truth)["delta_e"],
            "simulated_int8_agreement": simulated_agreement(servable, sim, check)}


def finetune_run(servable, run_dir, out_dir, epochs=DEFAULT_EPOCHS, learning_rate=DEFAULT_LEARNING_RATE,
                 consistency=None, representative_count=200, check_count=500, log=print):
    """Fine-tunes the run's model (`servable`, opened from `run_dir`) and writes it as the new run `out_dir`.

    The folder appears whole or not at all. Returns what `int8_finetune.json` records.
    """
    from keras_cnn import state_files
    from keras_cnn.colorization.task import PALETTE_FILE
    from keras_cnn.config import config_path, save_config
    from keras_cnn.fileio import atomic_path
    from keras_cnn.training.run_folder import HISTORY_CSV

    check_servable(servable)
    if consistency is None:
        consistency = default_consistency(servable)
    check, truth = servable.check_set(check_count)
    representative = servable.images("train", representative_count)
    before = figures(servable, check, truth, representative)
    log(f"before: Keras delta E {before['keras_delta_e']:.3f}, simulated int8 agreement "
        f"{100 * before['simulated_int8_agreement']:.2f}% ({len(check)} held-out images)")
    rows = finetune(servable, representative, epochs, learning_rate, consistency, log=log)
    after = figures(servable, check, truth, representative)
    result = {"source_run": os.path.abspath(run_dir), "source_checkpoint": (servable.source or {}).get("checkpoint"),
              "epochs": epochs, "learning_rate": learning_rate, "consistency": consistency,
              "representative_images": int(len(representative)), "check_images": int(len(check)),
              "figures": [{"model": "before", **before}, {"model": "after", **after}], "epoch_rows": rows}
    with atomic_path(out_dir, overwrite=False) as tmp:
        os.makedirs(tmp)
        # The config the model was opened with (a moved --data-dir included).
        save_config(servable.cfg, config_path(tmp), task="colorization")
        shutil.copy2(os.path.join(run_dir, PALETTE_FILE), os.path.join(tmp, PALETTE_FILE))
        # The training history the model comes from; it also makes `--resume` on the new run say
        # "run already finished" instead of training the fine-tuned model over again.
        if os.path.isfile(os.path.join(run_dir, HISTORY_CSV)):
            shutil.copy2(os.path.join(run_dir, HISTORY_CSV), os.path.join(tmp, HISTORY_CSV))
        servable.model.save(os.path.join(tmp, "best.keras"))
        # Both checkpoints, so every command's --checkpoint finds the fine-tuned model.
        shutil.copy2(os.path.join(tmp, "best.keras"), os.path.join(tmp, "last.keras"))
        with open(os.path.join(tmp, RECORD_FILE), "w") as f:
            f.write(state_files.json_text(result, os.path.join(out_dir, RECORD_FILE), "int8 fine-tuning record"))
    return result
