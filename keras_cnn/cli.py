"""The command-line edge: quiet start-up, one-line errors, argument parsing.

Every command (`keras_cnn.commands.*`) runs through `main`, the one place
where an expected failure becomes `error: <file or flag>: <problem>` on one
line with exit code 2 (130 on Ctrl-C). Anything else is a bug and keeps its
traceback. `KERAS_CNN_DEBUG=1` prints the traceback of expected failures too.

This module must stay light: `--help` of every command imports it, and help
must not wait for TensorFlow.
"""

import argparse
import errno
import importlib
import importlib.abc
import importlib.util
import logging
import os
import re
import sys
import traceback
import warnings

from keras_cnn.config import INT_LIMIT
from keras_cnn.errors import UserError

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

RESUME_HELP = ("continue the run in --run-dir from its last backup, with its saved config.json. The "
               "original --preset and flags may be repeated, but a value that differs from the saved "
               "config is refused (a resumed run is the same run). A finished run cannot be extended: "
               "to train longer, start a new --run-dir")


def debug():
    return os.environ.get("KERAS_CNN_DEBUG", "") not in ("", "0")


class _SilentTensorFlowImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports TensorFlow, the first time, with the process's stderr (fd 2) sent to /dev/null.

    On CPUs where TensorFlow turns oneDNN on by default (seen on an Intel Xeon
    with AMX), its shared libraries log "oneDNN custom operations are on ..."
    while they load, through absl before absl's logging is set up: such
    messages ignore TF_CPP_MIN_LOG_LEVEL. Only that import is silenced; a failing
    import still raises its Python exception once stderr is back.
    """

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # one import only
        spec = importlib.util.find_spec(name)  # the real one, from the finders after this one
        if spec is None or spec.loader is None:
            return spec
        self._loader, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        # TensorFlow keeps its real loader; only running it is wrapped.
        module.__spec__.loader = module.__loader__ = self._loader
        devnull = os.open(os.devnull, os.O_WRONLY)
        saved = os.dup(2)
        try:
            sys.stderr.flush()
            os.dup2(devnull, 2)
            self._loader.exec_module(module)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


def quiet_tensorflow():
    """Start-up without TensorFlow's banners; call before TensorFlow is imported.

    C++ logging (the CPU-feature and oneDNN notices) goes below WARNING unless
    the user chose a TF_CPP_MIN_LOG_LEVEL, and the import of TensorFlow itself
    runs with stderr silenced (`_SilentTensorFlowImport`); the Python loggers
    of TensorFlow and absl (retracing notices, "compiled metrics have yet to
    be built") show errors only. TF_ENABLE_ONEDNN_OPTS is left alone on
    purpose: it changes the numerics, not only the messages.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if debug():
        return
    if "tensorflow" not in sys.modules and not any(isinstance(f, _SilentTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _SilentTensorFlowImport())
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging
    except ImportError:  # absl comes with TensorFlow; without it there is nothing to quiet
        return
    absl_logging.set_verbosity(absl_logging.ERROR)


def _one_line(text):
    return " ".join(str(text).split())


def error_line(e):
    """The one-line message for an expected failure, or None for a bug.

    Library-specific exception types are looked up only if their library is
    already imported: an exception cannot come from a module nobody loaded,
    and the error path must not pay for importing TensorFlow.
    """
    if isinstance(e, UserError):
        return _one_line(e)
    if isinstance(e, OSError):
        problem = _full_disk(e.errno, str(e)) or _one_line(e.strerror or e)
        if e.filename is None:
            return problem
        where = e.filename if e.filename2 is None else f"{e.filename} -> {e.filename2}"
        return f"{where}: {problem}"
    if isinstance(e, MemoryError):
        return f"out of memory; {_memory_hint()}"
    pil = sys.modules.get("PIL.Image")
    if pil is not None and isinstance(e, (pil.UnidentifiedImageError, pil.DecompressionBombError)):
        return _one_line(e)
    if type(e).__name__ == "JSONDecodeError":  # json.JSONDecodeError, without naming a file
        return f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})"
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(e, tf.errors.OpError):
        # TensorFlow's message runs to pages (allocator state); its first line says what failed.
        first = _one_line((str(e.message).strip().splitlines() or [type(e).__name__])[0])
        # TensorFlow reports a full disk as RESOURCE_EXHAUSTED too: "{{function_node ...}} PATH; No space
        # left on device [Op:WriteFile]".
        full = _full_disk(None, first)
        if full:
            where = re.sub(r"\s*\[Op:\w+\].*$", "", re.sub(r"^\{\{.*?\}\}\s*", "", first))
            where = where.split("; No space left on device")[0].split(": No space left on device")[0]
            return f"{where}: {full}"
        if isinstance(e, tf.errors.ResourceExhaustedError):
            return f"out of memory ({first}); {_memory_hint()}"
    return None


# The flags of the command that is running (`ArgumentParser.parse_args` records them), so that a hint
# names only flags the command has.
_FLAGS = set()


def _memory_hint():
    """What to try after running out of memory, in the flags of the running command."""
    if "--batch-size" in _FLAGS:
        return "try a smaller --batch-size or smaller images"
    if "--image-size" in _FLAGS:
        return "try a smaller --image-size"
    return "try smaller images, or free some memory"


_FULL_DISK = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}


def _full_disk(code, message):
    """The words for a full disk (by errno, or by the words of a library that drops the errno), else None."""
    what = _FULL_DISK.get(code) or ("no space left on device" if "No space left on device" in message else None)
    return f"{what}; free some space there, or write somewhere else, and run the command again" if what else None


def main(fn):
    """Runs `fn()` and exits: its return code, 2 on an expected failure, 130 on Ctrl-C (128 + the signal
    number for training stopped cleanly by a signal: 143 for SIGTERM)."""
    quiet_tensorflow()
    _FLAGS.clear()
    warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"
    try:
        code = fn()
    except KeyboardInterrupt as e:
        # A clean stop by a signal (SIGTERM from a scheduler, a first Ctrl-C) exits 128 + its
        # number, as a shell reports a process the signal killed, and says where it backed up.
        code = getattr(e, "exit_code", None)
        print(f"error: {e}" if code else "error: interrupted", file=sys.stderr)
        sys.exit(code or EXIT_INTERRUPTED)
    except Exception as e:
        line = error_line(e)
        if line is None:
            raise
        if debug():
            traceback.print_exc()
        print(f"error: {line}", file=sys.stderr)
        sys.exit(EXIT_ERROR)
    sys.exit(code or 0)


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are `UserError`s: one line, like every other error.

    Plain argparse prints the whole usage block before its message; with a
    dozen flags the message scrolls out of sight.
    """

    def __init__(self, description=None, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(description=description, **kwargs)

    def error(self, message):
        raise UserError(f"{message} (see {self.prog} --help)")

    def parse_known_args(self, args=None, namespace=None):
        # The flags of the running command, for hints that name only flags it has (`_memory_hint`).
        _FLAGS.clear()
        _FLAGS.update(self._option_string_actions)
        # A required flag with a deprecated alias (`vocabulary.add_alias`) is checked here, not by argparse.
        namespace, extras = super().parse_known_args(args, namespace)
        missing = [a.option_strings[0] for a in self._actions
                   if getattr(a, "required_unless_alias", False) and getattr(namespace, a.dest, None) is None]
        if missing:
            self.error(f"the following arguments are required: {', '.join(missing)}")
        return namespace, extras


def add_verbose(parser):
    """`--verbose 0|1|2`, Keras' progress output while training (default: a bar on a terminal, else 2)."""
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=None,
                        help="progress while training: 0 none, 1 a progress bar, 2 one line per epoch "
                             "(default: 1 on a terminal, 2 when the output goes to a file or a pipe)")


def verbosity(args):
    """The `verbose` value for `keras_cnn.tasks.train` from the parsed `--verbose`."""
    return "auto" if args.verbose is None else args.verbose


def at_least(low, high=INT_LIMIT):
    """An argparse `type`: an integer from `low` to `high`, else a one-line error naming the flag.

    `high` defaults to the largest value of an integer config field (`config.INT_LIMIT`).
    """
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"wants an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        if value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high}, got {value}")
        return value
    parse.__name__ = "int"  # argparse names the type in its own messages
    return parse


def positive_float(text):
    """An argparse `type`: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def non_negative_float(text):
    """An argparse `type`: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def preset_choice(argv, presets, default):
    """The `--preset` in `argv` (or `default`), read before the full parser is built.

    The flag group shows the chosen preset's values as defaults, so the
    preset has to be known first. A missing or unknown preset here falls back
    to `default`; the full parser then reports it properly.
    """
    pre = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    pre.add_argument("--preset")
    try:
        known, _ = pre.parse_known_args(sys.argv[1:] if argv is None else argv)
    except argparse.ArgumentError:
        return default
    return known.preset if known.preset in presets else default
