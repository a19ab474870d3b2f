"""Where and how a run trains: strategy, seeds, precision, global batch, learning rate."""

import dataclasses
import math
import os

import keras
import tensorflow as tf

from keras_cnn import distribute
from keras_cnn.errors import UserError


@dataclasses.dataclass
class Runtime:
    """Where and how a run trains, resolved from its `TrainingConfig`."""

    strategy: tf.distribute.Strategy
    replicas: int
    global_batch: int
    learning_rate: float
    chief: bool


def mixed_policy():
    """float16 where GPUs have fast float16 math, bfloat16 on CPU and TPU."""
    return "mixed_float16" if tf.config.list_logical_devices("GPU") else "mixed_bfloat16"


def cpu_bfloat16_features(cpuinfo="/proc/cpuinfo"):
    """The bfloat16 instruction sets this CPU has, of AVX512-BF16 and AMX-BF16 (Linux only).

    oneDNN runs bfloat16 convolutions and matmuls on them; without either,
    TensorFlow emulates bfloat16 and a mixed-precision step is slower than
    float32. An empty tuple where /proc/cpuinfo is missing or names neither.
    """
    try:
        with open(cpuinfo) as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return ()
    return tuple(name for name in ("avx512_bf16", "amx_bf16") if name in flags)


def onednn_enabled():
    """Whether TensorFlow runs its oneDNN CPU kernels in this process (None if it cannot say).

    TensorFlow turns them on by default only on some CPUs; TF_ENABLE_ONEDNN_OPTS
    overrides that. They trained the course UNet 1.6x faster where measured
    (docs/BENCHMARKS.md), with slightly different float rounding.
    """
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


def _onednn_note():
    enabled = onednn_enabled()
    if enabled is None:
        return ""
    if enabled:
        return "; oneDNN on"
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS"):
        return f"; oneDNN off (TF_ENABLE_ONEDNN_OPTS={os.environ['TF_ENABLE_ONEDNN_OPTS']})"
    return "; oneDNN off (TensorFlow's default on this CPU; TF_ENABLE_ONEDNN_OPTS=1 may train faster)"


def _precision_note(policy):
    if policy != "mixed_bfloat16":
        return ""
    features = cpu_bfloat16_features()
    if features:
        return f" ({' and '.join(features)} on this CPU)"
    return (" (WARNING: this CPU has no avx512_bf16 or amx_bf16 instructions, so bfloat16 is emulated and "
            "usually slower than float32)")


def setup_runtime(cfg, log=print):
    """Strategy, seeds, precision policy, global batch and learning rate for `cfg`.

    The batch size in a config is per replica; the global batch is that times
    the replicas in sync. The learning rate follows `cfg.lr_scaling`: "none"
    keeps it, "linear" multiplies it by the replicas (Goyal et al. 2017),
    "sqrt" by their square root. The rule and the result are logged. The
    precision policy is set (or reset to float32) for the whole process.
    """
    # The strategy comes first: MultiWorkerMirroredStrategy must set up its
    # collective ops before any other TensorFlow work.
    strategy = distribute.get_strategy(cfg.strategy)
    keras.utils.set_random_seed(cfg.seed)
    keras.mixed_precision.set_global_policy(mixed_policy() if cfg.mixed_precision else "float32")
    replicas = strategy.num_replicas_in_sync
    if cfg.jit_compile and replicas > 1 and not tf.config.list_logical_devices("GPU"):
        # Keras XLA-compiles the whole distributed step, all-reduce included,
        # and TensorFlow has no XLA collectives on CPU (UnimplementedError
        # under MultiWorkerMirroredStrategy; MirroredStrategy over logical
        # CPUs fails with "Trying to access resource ... on CPU:1 from CPU:0").
        raise UserError(f"--jit-compile with {replicas} CPU replicas: XLA cannot compile collective ops on "
                        "CPU; train with one replica or without --jit-compile")
    factor = {"none": 1.0, "linear": float(replicas), "sqrt": math.sqrt(replicas)}[cfg.lr_scaling]
    runtime = Runtime(strategy, replicas, cfg.batch_size * replicas, cfg.learning_rate * factor,
                      distribute.is_chief(strategy))
    log(f"strategy {type(strategy).__name__} with {replicas} replica(s) ({distribute.task_name()}"
        f"{', chief' if runtime.chief else ''}); global batch {cfg.batch_size} x {replicas} = "
        f"{runtime.global_batch}; learning rate {cfg.learning_rate:g} x {factor:g} ({cfg.lr_scaling} "
        f"scaling) = {runtime.learning_rate:g}; precision {keras.mixed_precision.global_policy().name}"
        f"{_precision_note(keras.mixed_precision.global_policy().name)}; "
        f"XLA {'on' if cfg.jit_compile else 'off'}{_onednn_note()}")
    return runtime
