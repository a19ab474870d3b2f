"""`fit`: `model.fit` with the standard callbacks, on any backend and strategy.

The caller builds and compiles the model inside `runtime.scope()`
(`setup_runtime` gives the runtime). Resuming: run the same command again
with `--resume`; `RunBackup` restores the last backup and training goes on
from there. SIGTERM and SIGINT stop training after the running step, backed
up (`StopOnSignal`); a non-finite loss stops it with a `UserError`
(`StopOnNaN`).
"""

import shutil
import sys

import tensorflow as tf

from keras_cnn import distribute
from keras_cnn.training.callbacks import RunBackup, StopOnSignal, standard_callbacks


def _shard_on_purpose(dataset):
    # A pipeline that chose a policy keeps it; one left at AUTO gets DATA.
    if isinstance(dataset, tf.data.Dataset) and (
            dataset.options().experimental_distribute.auto_shard_policy
            == tf.data.experimental.AutoShardPolicy.AUTO):
        return distribute.set_auto_shard_policy(dataset, "data")
    return dataset


def fit(model, train_ds, val_ds, epochs, run_dir, monitor="val_loss", mode="min",
        backup_every_steps=0, chief=True, extra_callbacks=(), verbose="auto", steps_per_epoch=None,
        sync_batchnorm=True, log=print):
    """`model.fit` with the standard callbacks; returns the History.

    `verbose="auto"`: Keras' progress bar on a terminal, one line per epoch
    (2) when stdout is a file or a pipe, where the bar's carriage returns
    would fill the log. `extra_callbacks` run on the chief only, before the backup. Datasets are
    batched at the global batch; those left at the AUTO shard policy are set
    to DATA. `sync_batchnorm`: BatchNorm statistics over the global batch
    when there are several replicas (`distribute.sync_batchnorm`).
    """
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    # On JAX a data-parallel step is one program over the global batch: BatchNorm is synchronised already.
    strategy = distribute.model_strategy(model)
    if sync_batchnorm and strategy is not None and strategy.num_replicas_in_sync > 1:
        distribute.sync_batchnorm(model)
    callbacks = standard_callbacks(run_dir, monitor, mode, backup_every_steps, chief, log)
    backup = next(c for c in callbacks if isinstance(c, RunBackup))
    stopper = next(c for c in callbacks if isinstance(c, StopOnSignal))
    at = callbacks.index(backup)
    callbacks[at:at] = [c for c in extra_callbacks if chief]
    stopper.install()
    try:
        return model.fit(_shard_on_purpose(train_ds),
                         validation_data=None if val_ds is None else _shard_on_purpose(val_ds),
                         epochs=epochs, callbacks=callbacks, verbose=verbose,
                         steps_per_epoch=steps_per_epoch, shuffle=False)
    finally:
        stopper.restore()
        if not chief:
            shutil.rmtree(backup.backup_dir, ignore_errors=True)
