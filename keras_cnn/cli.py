"""What every script shares: quiet TensorFlow start-up and one-line errors."""

import os
import sys
import warnings


def quiet_tensorflow():
    # TensorFlow's C++ start-up chatter drowns the progress bars users want.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(fn):
    """Runs `fn()`; a `UserError` becomes `error: ...` on stderr and exit 2."""
    from keras_cnn.errors import UserError

    warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"
    try:
        code = fn()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
