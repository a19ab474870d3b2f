"""Workaround for keras-team/keras#20585: Keras 3 `model.fit` under MultiWorkerMirroredStrategy.

Keras 3.15's TensorFlow trainer crashes as soon as `fit` (or `evaluate`) runs
with a `tf.distribute.MultiWorkerMirroredStrategy` spanning two or more
workers. Two bugs in `keras/src/backend/tensorflow/trainer.py`, hit one after
the other:

1. `TensorFlowTrainer._maybe_symbolic_build` takes the first distributed
   batch, a tuple of `PerReplica` values, and calls
   `strategy.reduce("MEAN", batch, axis=None)` on the whole tuple only to read
   its shapes. MultiWorkerMirroredStrategy's reduce cannot take a nested
   structure: "Attempt to convert a value (PerReplica:{...}) with an
   unsupported type ... to a Tensor".
2. `reduce_per_replica`, which turns each train step's per-replica metric
   values into the logged ones, calls `strategy.reduce("MEAN", v, axis=0)` in
   its multi-worker branch. The metric values are scalars, so: "Invalid
   reduction dimension 0 for input with 0 dimensions". (`axis=0` was meant as
   "across replicas", which is what `axis=None` means for `strategy.reduce`.)

`apply(strategy)` installs two replacements, and only when `strategy` is a
MultiWorkerMirroredStrategy in multi-worker mode; `keras_cnn.distribute.
get_strategy` calls it for `--strategy multi_worker`. Each replacement handles
the multi-worker case and hands every other strategy to Keras' own function
unchanged, so installing them cannot alter single-machine training:

- the symbolic build reads shapes from this worker's first local replica
  (only shapes and dtypes are used; no reduction is needed);
- metric values are averaged across replicas with `axis=None`.

`tests/test_multiworker.py::test_keras_20585_still_crashes_without_fix` runs
two workers without this module and asserts both crashes. The day it fails,
Keras has fixed the bug: delete this module, its call in `distribute.py` and
that test.
"""

import tensorflow as tf
from keras.src.backend.tensorflow import trainer as _trainer

PATCHES = ("symbolic_build", "reduce_per_replica")

_originals = {}


def is_multi_worker(strategy):
    """True for a MultiWorkerMirroredStrategy that spans two or more workers."""
    return _trainer._collective_all_reduce_multi_worker(strategy)


def _first_local_value(strategy, value):
    if isinstance(value, tf.distribute.DistributedValues):
        return strategy.experimental_local_results(value)[0]
    return value


def _maybe_symbolic_build(self, iterator=None, data_batch=None):
    strategy = self._distribute_strategy
    if strategy is None or not is_multi_worker(strategy) or iterator is None:
        return _originals["symbolic_build"](self, iterator=iterator, data_batch=data_batch)
    for _, _, it in iterator:
        batch = next(it)
        data_batch = tf.nest.map_structure(lambda v: _first_local_value(strategy, v), batch)
        break
    with strategy.scope():
        self._symbolic_build(data_batch=data_batch)


def _reduce_per_replica(values, strategy, reduction):
    if is_multi_worker(strategy) and reduction in ("auto", "mean"):
        return tf.nest.map_structure(
            lambda v: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None), values)
    return _originals["reduce_per_replica"](values, strategy, reduction)


def _install(name):
    if name in _originals:
        return
    if name == "symbolic_build":
        _originals[name] = _trainer.TensorFlowTrainer._maybe_symbolic_build
        _trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    elif name == "reduce_per_replica":
        # `one_step_on_data` looks the function up in the module at call time.
        _originals[name] = _trainer.reduce_per_replica
        _trainer.reduce_per_replica = _reduce_per_replica
    else:
        raise ValueError(f"unknown patch {name!r}; choose from {PATCHES}")


def apply(strategy, patches=PATCHES):
    """Installs `patches` if `strategy` spans several workers; returns True if it does."""
    if not is_multi_worker(strategy):
        return False
    for name in patches:
        _install(name)
    return True


def installed():
    """Names of the patches installed in this process."""
    return tuple(sorted(_originals))


def remove():
    """Restores Keras' own functions."""
    if "symbolic_build" in _originals:
        _trainer.TensorFlowTrainer._maybe_symbolic_build = _originals.pop("symbolic_build")
    if "reduce_per_replica" in _originals:
        _trainer.reduce_per_replica = _originals.pop("reduce_per_replica")
