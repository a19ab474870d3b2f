"""One switch for `tf.distribute`: `--strategy auto|default|one_device|mirrored|multi_worker|tpu`.

Build and `compile` the model inside `strategy.scope()`. Batch sizes in the
configs are per replica; the global batch is per replica x replicas.
"""

import json
import logging
import os

import tensorflow as tf

from keras_cnn.errors import UserError

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")
log = logging.getLogger(__name__)


def _tf_config_cluster():
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        cfg = json.loads(raw)
    except json.JSONDecodeError as e:
        raise UserError(f"TF_CONFIG is not valid JSON ({e.msg})") from None
    cluster = cfg.get("cluster") or {}
    return cfg if sum(len(v) for v in cluster.values()) > 1 else None


def get_strategy(name="auto"):
    """Returns the `tf.distribute.Strategy` named by `name` (see module doc)."""
    if name not in STRATEGIES:
        raise UserError(f"unknown strategy {name!r}; choose one of: {', '.join(STRATEGIES)}")
    if name == "auto":
        if _tf_config_cluster():
            name = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        # Several logical CPUs (set up by the caller) stand in for GPUs in tests.
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        if not _tf_config_cluster():
            raise UserError("--strategy multi_worker needs TF_CONFIG naming a cluster of 2 or more tasks")
        return tf.distribute.MultiWorkerMirroredStrategy()
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.NotFoundError) as e:
        raise UserError(f"--strategy tpu: no TPU found ({e})") from None
    return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy):
    """True on the worker that writes checkpoints, logs and exports."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not _tf_config_cluster():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type in (None, "chief") or (task_type == "worker" and task_id == 0
                                            and "chief" not in resolver.cluster_spec().as_dict())
