"""One switch for `tf.distribute`: `--strategy auto|default|one_device|mirrored|multi_worker|tpu`.

Build and `compile` the model inside `strategy.scope()`. Batch sizes in the
configs are per replica; the global batch is per replica x replicas, and every
dataset is batched at the global size (tf.distribute splits each global batch
between the replicas).

`auto` picks MultiWorkerMirroredStrategy when `TF_CONFIG` names a cluster of
two or more tasks, MirroredStrategy over all GPUs when more than one is
visible, and the default strategy otherwise. Several machines: start the same
command on each with its own `TF_CONFIG` (see docs/DISTRIBUTED.md); the chief
(task type "chief", or worker 0 when there is none) writes everything, the
others keep their scratch files in temporary folders.

A multi-worker strategy waits for every task of the cluster when it is made
(`get_strategy`), at most `KERAS_CNN_CLUSTER_TIMEOUT` seconds (default 300):
a peer that never starts is a one-line `UserError` naming it, not a hang, and
SIGTERM or Ctrl-C during the wait stop it at once (exit 143 or 130).
"""

import contextlib
import json
import logging
import math
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time

import keras
import tensorflow as tf

from keras_cnn.errors import Interrupted, UserError

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")
CLUSTER_TIMEOUT_ENV = "KERAS_CNN_CLUSTER_TIMEOUT"
DEFAULT_CLUSTER_TIMEOUT = 300.0
# The task types TensorFlow's coordination service waits for.
_COORDINATED = ("chief", "worker")
# How often the wait for peers looks again, in seconds.
_PEER_POLL = 0.25
log = logging.getLogger(__name__)

_SHARD_POLICIES = {
    "data": tf.data.experimental.AutoShardPolicy.DATA,
    "file": tf.data.experimental.AutoShardPolicy.FILE,
    "off": tf.data.experimental.AutoShardPolicy.OFF,
}


def tf_config():
    """The parsed `TF_CONFIG` if it names a cluster of 2 or more tasks, else None.

    A malformed one is a `UserError` here rather than a hang or a gRPC error
    from the first collective op.
    """
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        cfg = json.loads(raw)
    except json.JSONDecodeError as e:
        raise UserError(f"TF_CONFIG is not valid JSON ({e.msg})") from None
    cluster = cfg.get("cluster") if isinstance(cfg, dict) else None
    if not cluster:
        return None
    if not isinstance(cluster, dict) or not all(isinstance(v, list) for v in cluster.values()):
        raise UserError('TF_CONFIG "cluster" must map task types to lists of "host:port"')
    if sum(len(v) for v in cluster.values()) < 2:
        return None
    task = cfg.get("task")
    if not isinstance(task, dict) or "type" not in task:
        raise UserError('TF_CONFIG names a cluster but no "task" {"type": ..., "index": ...} for this process')
    kind, index = task["type"], task.get("index", 0)
    if kind not in cluster or not isinstance(index, int) or not 0 <= index < len(cluster[kind]):
        raise UserError(f"TF_CONFIG task {kind}:{index} is not in its cluster "
                        f"({', '.join(f'{k}: {len(v)}' for k, v in sorted(cluster.items()))})")
    return cfg


def get_strategy(name="auto"):
    """Returns the `tf.distribute.Strategy` named by `name` (see module doc).

    Call it before any other TensorFlow work: MultiWorkerMirroredStrategy must
    configure the collective ops at program start-up.
    """
    if name not in STRATEGIES:
        raise UserError(f"unknown strategy {name!r}; choose one of: {', '.join(STRATEGIES)}")
    cluster = tf_config()
    if name == "auto":
        if cluster:
            name = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if cluster and name in ("default", "one_device", "mirrored"):
        # Each machine would train its own copy and all would write the same run folder.
        raise UserError(f"TF_CONFIG names a cluster but --strategy {name} trains on one machine; use "
                        "--strategy multi_worker (or auto), or unset TF_CONFIG")
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
        if not cluster:
            raise UserError("--strategy multi_worker needs TF_CONFIG naming a cluster of 2 or more tasks")
        from keras_cnn import multiworker_fix

        strategy = _multi_worker_strategy(cluster, cluster_timeout())
        multiworker_fix.apply(strategy)
        return strategy
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.NotFoundError) as e:
        raise UserError(f"--strategy tpu: no TPU found ({e})") from None
    return tf.distribute.TPUStrategy(resolver)


def cluster_timeout():
    """Seconds a multi-worker strategy waits for its peers: `KERAS_CNN_CLUSTER_TIMEOUT`, default 300."""
    raw = os.environ.get(CLUSTER_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_CLUSTER_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"{CLUSTER_TIMEOUT_ENV}={raw!r}: must be a positive number of seconds")
    return value


def _task_address(cluster, kind, index):
    return f"{kind}:{index} ({cluster['cluster'][kind][index]})"


def _reachable(address, timeout=1.0):
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def _missing_tasks(cluster, message):
    """The tasks a failed cluster start waited for in vain: from TensorFlow's message, else by probing."""
    me = (cluster["task"]["type"], cluster["task"].get("index", 0))
    named = []
    if "timed out task names" in message:
        tail = message.split("timed out task names", 1)[1]
        for kind, index in re.findall(r"/job:(\w+)/replica:\d+/task:(\d+)", tail):
            key = (kind, int(index))
            if key != me and key not in named and kind in cluster["cluster"] \
                    and key[1] < len(cluster["cluster"][kind]):
                named.append(key)
    if not named:
        # The peers whose server does not even accept connections.
        named = [(kind, i) for kind, addresses in sorted(cluster["cluster"].items())
                 for i, address in enumerate(addresses)
                 if (kind, i) != me and not _reachable(address)]
    return [_task_address(cluster, kind, i) for kind, i in named]


@contextlib.contextmanager
def _native_stderr_to(path):
    """Sends what TensorFlow's C++ code writes to stderr (fd 2) into the file `path` meanwhile."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "wb") as f:
            os.dup2(f.fileno(), 2)
        yield saved
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _configure_cluster_wait(timeout):
    """Makes the coordination service wait for every task at most `timeout` s, the leader included.

    TensorFlow's own set-up (`CollectiveAllReduceExtended._initialize_multi_worker`)
    leaves the register timeout unset, and its leader waits for the other
    tasks forever; it skips its set-up when one is configured already, so
    this one, identical but for the timeout and the register barrier, is
    the one used. Returns False (nothing done) if TensorFlow's internals
    have moved.
    """
    try:
        from tensorflow.python.distribute import multi_worker_util
        from tensorflow.python.distribute.cluster_resolver import TFConfigClusterResolver
        from tensorflow.python.eager import context

        try:
            from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
        except ImportError:
            from tsl.protobuf import coordination_config_pb2
    except ImportError:
        return False
    ctx = context.context()
    if ctx.coordination_service is not None:
        return False
    resolver = TFConfigClusterResolver()
    spec = multi_worker_util.normalize_cluster_spec(resolver.cluster_spec())
    if resolver.task_type not in ("chief", "worker"):
        return False
    jobs = [coordination_config_pb2.CoordinatedJob(name=job, num_tasks=spec.num_tasks(job))
            for job in ("chief", "worker") if job in spec.jobs]
    ctx.configure_coordination_service(
        service_type="standalone", service_leader=multi_worker_util.coordination_leader(spec),
        coordinated_jobs=jobs, cluster_register_timeout_in_ms=max(1, int(timeout * 1000)))
    config = ctx.coordination_service
    if "cluster_register_with_barrier" in config.DESCRIPTOR.fields_by_name:
        config.cluster_register_with_barrier = True
    return True


def _peers(cluster):
    """(type, index) of every other task the coordination service waits for."""
    me = (cluster["task"]["type"], cluster["task"].get("index", 0))
    return [(kind, i) for kind in _COORDINATED for i in range(len(cluster["cluster"].get(kind, [])))
            if (kind, i) != me]


def _timeout_error(cluster, missing, timeout, detail=""):
    me = _task_address(cluster, cluster["task"]["type"], cluster["task"].get("index", 0))
    who = ", ".join(missing) if missing else "a peer"
    return UserError(f"TF_CONFIG: {who} did not join the cluster within {timeout:g} s (this is {me}); start "
                     f"every task with its own TF_CONFIG, or wait longer with {CLUSTER_TIMEOUT_ENV}=SECONDS"
                     + detail)


def _listen_in_place(cluster):
    """A socket listening on this task's port until its TensorFlow server takes the port over.

    Peers waiting in `_wait_for_peers` see this task as started as soon as it
    waits itself. All interfaces, as TensorFlow's own server listens.
    """
    kind, index = cluster["task"]["type"], cluster["task"].get("index", 0)
    address = cluster["cluster"][kind][index]
    _, _, port = address.rpartition(":")
    try:
        port = int(port)
        if socket.has_dualstack_ipv6():
            return socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True)
        return socket.create_server(("", port))
    except ValueError:
        raise UserError(f"TF_CONFIG: this task's address {address!r} has no port number") from None
    except OSError as e:
        me = _task_address(cluster, kind, index)
        raise UserError(f"TF_CONFIG: cannot listen on port {port} of this task ({me}): {e.strerror or e}; "
                        "is another process using it?") from None


def _wait_for_peers(cluster, timeout, waiting):
    """Waits, in Python, until every other chief and worker task accepts connections on its port.

    TensorFlow's own wait happens in C++ with the interpreter's lock held, so
    no Python signal handler runs until it ends (SIGTERM and Ctrl-C did
    nothing until the timeout). This wait sleeps in Python between looks, so
    signals act at once. Each task listens on its own port meanwhile
    (`_listen_in_place`), so the peers see it; connections are accepted and
    closed. `waiting` (a list) holds the peers not seen yet, for messages.
    """
    placeholder = _listen_in_place(cluster)
    placeholder.setblocking(False)
    deadline = time.monotonic() + timeout
    pending = _peers(cluster)
    try:
        while True:
            while True:  # the peers' own looks at this task
                try:
                    connection, _ = placeholder.accept()
                except (BlockingIOError, InterruptedError):
                    break
                connection.close()
            pending = [(kind, i) for kind, i in pending
                       if not _reachable(cluster["cluster"][kind][i], timeout=min(1.0, _PEER_POLL * 2))]
            waiting[:] = [_task_address(cluster, kind, i) for kind, i in pending]
            if not pending:
                return
            if time.monotonic() >= deadline:
                raise _timeout_error(cluster, waiting, timeout)
            time.sleep(_PEER_POLL)
    finally:
        placeholder.close()


@contextlib.contextmanager
def _signals_stop_the_wait(message):
    """SIGTERM and SIGINT raise `Interrupted` (exit 143 / 130 through `keras_cnn.cli`) while this lasts.

    `message(signal_name)` gives its one line. Yields `native()`, a context
    for the call into TensorFlow that blocks both signals in this thread
    (and so in the threads TensorFlow starts there, which inherit the mask):
    TensorFlow's coordination agent installs a SIGTERM handler of its own
    there that would swallow the signal. On the way out the handler is put
    back and the signals unblocked, so one that came meanwhile acts then.
    Outside the main thread (where Python runs no signal handlers) it changes
    nothing.
    """
    signals = (signal.SIGTERM, signal.SIGINT)
    if threading.current_thread() is not threading.main_thread():
        yield contextlib.nullcontext
        return

    def handle(signum, frame):
        raise Interrupted(signum, message(signal.Signals(signum).name))

    previous = {s: signal.getsignal(s) for s in signals}

    @contextlib.contextmanager
    def native():
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        try:
            yield
        finally:
            for s in signals:
                signal.signal(s, handle)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    for s in signals:
        signal.signal(s, handle)
    try:
        yield native
    finally:
        for s, handler in previous.items():
            # None: a handler not installed from Python; the default then.
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


def _multi_worker_strategy(cluster, timeout):
    """`MultiWorkerMirroredStrategy()` that waits at most `timeout` s for its peers, and stops on a signal.

    First every other chief and worker task must accept connections
    (`_wait_for_peers`, in Python: SIGTERM or Ctrl-C end it at once with one
    line, exit 143 or 130; nothing has been written yet). Then TensorFlow
    registers the tasks with its coordination service, again within
    `timeout`: the peers are up by then, so this takes a second or so; a
    signal in it acts when it ends. A peer that never comes is a
    `UserError` naming it. TensorFlow's log lines of a failed start (a
    screenful from C++) are dropped; those of a successful one are passed
    on. Afterwards the previous SIGTERM and SIGINT handlers are back
    (TensorFlow's own SIGTERM handler, a preemption notice nothing here
    reads, would make the process ignore SIGTERM).
    """
    me = _task_address(cluster, cluster["task"]["type"], cluster["task"].get("index", 0))
    waiting = []

    def stopped(name):
        who = ", ".join(waiting) if waiting else "the other tasks"
        return (f"TF_CONFIG: stopped by {name} while waiting for {who} to join the cluster (this is {me}); "
                "nothing was written, so the same command starts afresh")

    with _signals_stop_the_wait(stopped) as native:
        if cluster["task"]["type"] in _COORDINATED:
            _wait_for_peers(cluster, timeout, waiting)
        waiting[:] = []
        configured = _configure_cluster_wait(timeout)
        with tempfile.TemporaryDirectory(prefix="keras_cnn_cluster_") as scratch:
            native_log = os.path.join(scratch, "stderr.log")
            failure = None
            with native(), _native_stderr_to(native_log):
                try:
                    strategy = tf.distribute.MultiWorkerMirroredStrategy()
                except RuntimeError as e:
                    failure = UserError(f"--strategy multi_worker: {str(e).splitlines()[0]} (create the strategy "
                                        "before any other TensorFlow work)")
                except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError, tf.errors.AbortedError,
                        tf.errors.InternalError, tf.errors.FailedPreconditionError) as e:
                    failure = _timeout_error(cluster, _missing_tasks(cluster, str(e)), timeout,
                                             "" if configured else f" ({type(e).__name__})")
            if failure is None:
                with open(native_log, "rb") as f:
                    logged = f.read()
                if logged:
                    sys.stderr.flush()
                    os.write(2, logged)
    if failure is not None:
        _silence_native_stderr()
        raise failure
    return strategy


def _silence_native_stderr():
    """After a failed cluster start TensorFlow's C++ keeps logging its shutdown at exit: to /dev/null.

    Python's `sys.stderr` keeps writing where stderr went (a new descriptor
    for the same file), so the one-line error still shows.
    """
    try:
        sys.stderr.flush()
        keep = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        sys.stderr = open(keep, "w", buffering=1, closefd=True)
    except (OSError, ValueError):
        pass


def model_strategy(model):
    """The `tf.distribute` strategy `model` was built under; None on the other Keras backends."""
    return model.distribute_strategy if keras.backend.backend() == "tensorflow" else None


def is_chief(strategy=None):
    """True on the process that writes checkpoints, logs and exports.

    With a strategy, TensorFlow's own answer (`extended.should_checkpoint`:
    False only on the non-chief workers of a multi-worker strategy). Without
    one, read from `TF_CONFIG`: the task of type "chief", else worker 0;
    evaluators and the other workers are not chief; no cluster means chief.
    """
    if strategy is not None:
        return bool(strategy.extended.should_checkpoint)
    cfg = tf_config()
    if cfg is None:
        return True
    kind, index = cfg["task"]["type"], cfg["task"].get("index", 0)
    if "chief" in cfg["cluster"]:
        return kind == "chief"
    return kind == "worker" and index == 0


def task_name():
    """"worker:1"-style name of this process in its cluster, or "local"."""
    cfg = tf_config()
    if cfg is None:
        return "local"
    return f"{cfg['task']['type']}:{cfg['task'].get('index', 0)}"


def set_auto_shard_policy(dataset, policy="data"):
    """Sets on purpose how a multi-worker strategy splits `dataset` between workers.

    "data" (right for datasets built in memory or from a list of file names):
    every worker runs the whole pipeline and keeps its own share of every
    global batch. "file": each worker reads its own subset of input files
    (needs at least as many files as workers). "off": no sharding. Left at
    AUTO, TensorFlow tries FILE, fails for in-memory data and falls back to
    DATA with a warning; this states the intent instead. Single-machine
    strategies ignore it.
    """
    if policy not in _SHARD_POLICIES:
        raise ValueError(f"unknown auto-shard policy {policy!r}; choose from {', '.join(_SHARD_POLICIES)}")
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = _SHARD_POLICIES[policy]
    return dataset.with_options(options)


def sync_batchnorm(model, enabled=True):
    """Makes every BatchNormalization layer of `model` use global-batch statistics.

    With `enabled`, each training step all-reduces the batch mean and variance
    across replicas, so N replicas train exactly like one device on the same
    global batch (otherwise each replica normalises with its own share, which
    changes the result and gets noisy when that share is small). Costs one
    small all-reduce per layer per step; with one replica it changes nothing.
    Returns the number of layers set.
    """
    layers = [layer for layer in model._flatten_layers(include_self=False)
              if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in layers:
        layer.synchronized = bool(enabled)
    return len(layers)


def broadcast_from_chief(strategy, variables, extra=()):
    """Gives every worker the chief's values of `variables` (and of ints `extra`).

    After a resume only the chief has read the backup (the other workers keep
    no files, and need no shared file system). An all-reduce sum of the
    chief's values and zeros from the others copies them, one collective per
    dtype. Returns `extra` as the chief had it. Outside multi-worker training
    it changes nothing.
    """
    from keras_cnn import multiworker_fix

    extra = [int(e) for e in extra]
    if strategy is None or not multiworker_fix.is_multi_worker(strategy):
        return extra
    chief = is_chief(strategy)
    groups = {}
    for v in variables:
        groups.setdefault(tf.as_dtype(v.dtype), []).append(v)
    for dtype, group in groups.items():
        flat = tf.concat([tf.reshape(tf.convert_to_tensor(v), [-1]) for v in group], 0)
        flat = strategy.reduce(tf.distribute.ReduceOp.SUM, flat if chief else tf.zeros_like(flat), axis=None)
        offset = 0
        for v in group:
            size = int(tf.size(tf.convert_to_tensor(v)))
            v.assign(tf.reshape(flat[offset:offset + size], tf.shape(tf.convert_to_tensor(v))))
            offset += size
    if extra:
        values = tf.constant(extra if chief else [0] * len(extra), tf.int64)
        extra = [int(e) for e in strategy.reduce(tf.distribute.ReduceOp.SUM, values, axis=None).numpy()]
    return extra
