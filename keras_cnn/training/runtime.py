"""Where and how a run trains: backend, strategy, seeds, precision, global batch, learning rate.

The models are Keras 3 and train on any backend (`KERAS_BACKEND`); the data
pipelines are tf.data on every backend (Keras' `fit` takes them). What
"several devices" means depends on the backend:

- **tensorflow** (the default, and the fastest on CPU): `tf.distribute`
  strategies, one machine or several through `TF_CONFIG`
  (`keras_cnn.distribute`).
- **jax**: `keras.distribution.DataParallel` over every local device
  (GPUs, or CPU devices made with
  `XLA_FLAGS=--xla_force_host_platform_device_count=N`): `auto` uses it when
  there are two or more, `mirrored` asks for it; the train step is always
  XLA-compiled (JAX has no fast eager mode). BatchNorm statistics are over
  the global batch by construction. Several machines: not yet.
- **torch**: Keras trains on one device (the GPU if there is one): `auto`,
  `default` and `one_device`.

A strategy the backend cannot run is a one-line `UserError`.
"""

import contextlib
import dataclasses
import math
import os

import keras

from keras_cnn import distribute
from keras_cnn.backends import backend_name, has_gpu
from keras_cnn.errors import UserError

# The --strategy values each backend runs; the others are refused before anything is written.
BACKEND_STRATEGIES = {
    "tensorflow": distribute.STRATEGIES,
    "jax": ("auto", "default", "one_device", "mirrored"),
    "torch": ("auto", "default", "one_device"),
}


@dataclasses.dataclass
class Runtime:
    """Where and how a run trains, resolved from its `TrainingConfig`.

    `strategy` is the `tf.distribute.Strategy` on TensorFlow and None
    elsewhere; `distribution` the `keras.distribution` set on JAX (None for
    one device). Build and compile models inside `scope()`.
    """

    strategy: object
    replicas: int
    global_batch: int
    learning_rate: float
    chief: bool
    backend: str = "tensorflow"
    distribution: object = None
    jit_compile: bool = False

    def scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()


def resolve_jit_compile(flag):
    """`--jit-compile` as the backend runs it: JAX always compiles (its op-by-op mode is far slower)."""
    return True if backend_name() == "jax" else bool(flag)


def mixed_policy():
    """float16 where GPUs have fast float16 math, bfloat16 on CPU and TPU."""
    return "mixed_float16" if has_gpu() else "mixed_bfloat16"


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
    """Whether TensorFlow runs its oneDNN CPU kernels in this process (None if it cannot say, or on another backend).

    TensorFlow turns them on by default only on some CPUs; TF_ENABLE_ONEDNN_OPTS
    overrides that. They trained the course UNet 1.6x faster where measured
    (docs/BENCHMARKS.md), with slightly different float rounding.
    """
    if backend_name() != "tensorflow":
        return None
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


def _strategy(name, backend):
    """(tf.distribute strategy or None, keras.distribution or None, replicas) for `--strategy name`."""
    if name not in BACKEND_STRATEGIES[backend]:
        runs = ", ".join(BACKEND_STRATEGIES[backend])
        raise UserError(f"--strategy {name} does not run on the {backend} backend (KERAS_BACKEND={backend}); "
                        f"it runs {runs}" + (", or use KERAS_BACKEND=tensorflow" if backend != "tensorflow" else ""))
    if backend == "tensorflow":
        # MultiWorkerMirroredStrategy must set up its collective ops before any other TensorFlow work.
        strategy = distribute.get_strategy(name)
        return strategy, None, strategy.num_replicas_in_sync
    if distribute.tf_config():
        raise UserError(f"TF_CONFIG names a cluster, but training on several machines runs on the TensorFlow "
                        f"backend only; unset TF_CONFIG or use KERAS_BACKEND=tensorflow (now {backend})")
    if backend == "jax":
        devices = keras.distribution.list_devices()
        if name == "mirrored" or (name == "auto" and len(devices) > 1):
            if len(devices) < 2 and name == "mirrored":
                raise UserError("--strategy mirrored needs two or more devices, and JAX sees one "
                                f"({devices[0]}); on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=2 "
                                "makes two")
            distribution = keras.distribution.DataParallel(devices=devices)
            keras.distribution.set_distribution(distribution)
            return None, distribution, len(devices)
        keras.distribution.set_distribution(None)
    return None, None, 1


def _placement(runtime):
    if runtime.strategy is not None:
        return (f"strategy {type(runtime.strategy).__name__} with {runtime.replicas} replica(s) "
                f"({distribute.task_name()}{', chief' if runtime.chief else ''})")
    if runtime.distribution is not None:
        return f"DataParallel over {runtime.replicas} devices"
    return "one device"


def setup_runtime(cfg, log=print):
    """Backend, strategy, seeds, precision policy, global batch and learning rate for `cfg`.

    The batch size in a config is per replica; the global batch is that times
    the replicas in sync. The learning rate follows `cfg.lr_scaling`: "none"
    keeps it, "linear" multiplies it by the replicas (Goyal et al. 2017),
    "sqrt" by their square root. The rule and the result are logged, after
    the backend. The precision policy is set (or reset to float32) for the
    whole process.
    """
    backend = backend_name()
    # The strategy comes first (see `_strategy`).
    strategy, distribution, replicas = _strategy(cfg.strategy, backend)
    keras.utils.set_random_seed(cfg.seed)
    keras.mixed_precision.set_global_policy(mixed_policy() if cfg.mixed_precision else "float32")
    if backend == "tensorflow" and cfg.jit_compile and replicas > 1 and not has_gpu():
        # Keras XLA-compiles the whole distributed step, all-reduce included,
        # and TensorFlow has no XLA collectives on CPU (UnimplementedError
        # under MultiWorkerMirroredStrategy; MirroredStrategy over logical
        # CPUs fails with "Trying to access resource ... on CPU:1 from CPU:0").
        raise UserError(f"--jit-compile with {replicas} CPU replicas: XLA cannot compile collective ops on "
                        "CPU; train with one replica or without --jit-compile")
    factor = {"none": 1.0, "linear": float(replicas), "sqrt": math.sqrt(replicas)}[cfg.lr_scaling]
    runtime = Runtime(strategy, replicas, cfg.batch_size * replicas, cfg.learning_rate * factor,
                      distribute.is_chief(strategy) if backend == "tensorflow" else True, backend, distribution,
                      resolve_jit_compile(cfg.jit_compile))
    log(f"backend {backend}; {_placement(runtime)}; global batch {cfg.batch_size} x {replicas} = "
        f"{runtime.global_batch}; learning rate {cfg.learning_rate:g} x {factor:g} ({cfg.lr_scaling} "
        f"scaling) = {runtime.learning_rate:g}; precision {keras.mixed_precision.global_policy().name}"
        f"{_precision_note(keras.mixed_precision.global_policy().name)}; "
        f"XLA {'on' if runtime.jit_compile else 'off'}{_onednn_note()}")
    return runtime
