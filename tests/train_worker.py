"""One training process of the distributed tests (test_multiworker.py, test_resume.py).

    python tests/train_worker.py keras20585      # under a 2-worker TF_CONFIG
    python tests/train_worker.py train RUN_DIR WEIGHTS.npz DATA_DIR [--strategy S] [--resume]
        [--kill-at EPOCH:STEP] [--sigterm-at EPOCH:STEP]

`train` trains a tiny colourizer with `keras_cnn.tasks.train`
(3 epochs, per-replica batch 4, a backup every 2 steps) and saves the final
weights to WEIGHTS.npz; `--kill-at` SIGKILLs the process as that step (both
0-based) begins, after the backup of the step before it; `--sigterm-at` sends
it SIGTERM there instead (a clean stop: exit 143 after a backup of that step).
"""

import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def one_line(e):
    # The first crash quotes a whole batch of numbers; keep its head and tail.
    text = " ".join(str(e).split())
    return text if len(text) < 400 else f"{text[:150]} ... {text[-200:]}"


def keras20585():
    """Plain Keras on a MultiWorkerMirroredStrategy: crash, crash, then train, one patch at a time."""
    import keras
    import numpy as np
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    from keras_cnn import multiworker_fix

    with strategy.scope():
        model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(3, 3, padding="same")])
        model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
    rng = np.random.RandomState(0)
    ds = tf.data.Dataset.from_tensor_slices(
        (rng.rand(16, 8, 8, 1).astype("float32"), rng.randint(0, 3, (16, 8, 8)))).batch(8)
    for label, patches in (("NO_FIX", ()), ("SYMBOLIC_BUILD_ONLY", ("symbolic_build",)),
                           ("FULL_FIX", multiworker_fix.PATCHES)):
        multiworker_fix.apply(strategy, patches)
        try:
            history = model.fit(ds, epochs=1, verbose=0)
            print(f"{label}: trained, loss {history.history['loss'][0]:.6f}", flush=True)
        except Exception as e:  # the crashes under test
            print(f"{label}: {type(e).__name__}: {one_line(e)}", flush=True)


class KillAt:
    """Sends `sig` (SIGKILL: a hard crash mid-epoch) to this process as step `step` of epoch `epoch` begins.

    Both 0-based.
    """

    def __init__(self, epoch, step, sig=signal.SIGKILL):
        import keras

        class _Killer(keras.callbacks.Callback):
            def on_epoch_begin(cb, e, logs=None):
                cb.epoch = e

            def on_train_batch_begin(cb, batch, logs=None):
                if cb.epoch == epoch and batch == step:
                    os.kill(os.getpid(), sig)

        self.callback = _Killer()


def train(run_dir, weights_path, data_dir, resume=False, kill_at=None, strategy="multi_worker", sigterm_at=None):
    import numpy as np

    from keras_cnn import training
    from keras_cnn.colorization.config import PRESETS, ColorizationConfig
    from keras_cnn.config import resolve
    from keras_cnn.tasks import train as train_colorizer

    original_fit, original_callbacks = training.fit, training.standard_callbacks

    def fit(model, *args, **kwargs):
        history = original_fit(model, *args, **kwargs)
        np.savez(weights_path, *model.get_weights())
        return history

    def standard_callbacks(*args, **kwargs):
        at, sig = (kill_at, signal.SIGKILL) if kill_at else (sigterm_at, signal.SIGTERM)
        return [KillAt(*at, sig=sig).callback] + original_callbacks(*args, **kwargs)

    training.fit = fit
    if kill_at or sigterm_at:
        from keras_cnn.training import loop

        # `fit` looks the function up in its own module.
        loop.standard_callbacks = standard_callbacks
    cfg = resolve(ColorizationConfig, PRESETS, "cifar10_unet", dict(
        source="folder", data_dir=data_dir, epochs=3, batch_size=4, num_colours=4, num_filters=4,
        val_fraction=0.25, strategy=strategy, backup_every_steps=2))
    from keras_cnn.errors import TrainingInterrupted

    try:
        train_colorizer(cfg, run_dir, resume=resume, verbose=2)
    except TrainingInterrupted as e:
        print(f"STOPPED: {e}", flush=True)
        sys.exit(e.exit_code)
    print("WORKER DONE", flush=True)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("keras20585", "train"))
    parser.add_argument("paths", nargs="*", metavar="RUN_DIR WEIGHTS.npz DATA_DIR")
    parser.add_argument("--strategy", default="multi_worker")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--kill-at", type=lambda v: tuple(int(p) for p in v.split(":")))
    parser.add_argument("--sigterm-at", type=lambda v: tuple(int(p) for p in v.split(":")))
    args = parser.parse_args()
    if args.mode == "keras20585":
        keras20585()
    else:
        train(*args.paths, resume=args.resume, kill_at=args.kill_at, strategy=args.strategy,
              sigterm_at=args.sigterm_at)
