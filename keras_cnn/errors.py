"""The one exception type users see.

Library code raises `UserError` for anything a user can fix (a bad file, a
wrong flag, no network). The commands turn it into one line on stderr with
exit code 2 (`keras_cnn.cli.main`), so nobody gets a stack trace from deep
inside TensorFlow for a typo.

It subclasses `ValueError` so that code calling the library as a Python API
can catch bad input the usual way (`except ValueError`).
"""


class UserError(ValueError):
    """A problem with the user's input, worded for the user."""


class Interrupted(KeyboardInterrupt):
    """Work stopped cleanly by a signal (SIGTERM, SIGINT), with a one-line message saying what was kept.

    A `KeyboardInterrupt`, so nothing that catches `Exception` swallows it;
    `exit_code` is 128 + the signal number (143 for SIGTERM, 130 for SIGINT),
    the code `keras_cnn.cli.main` exits with, as a shell reports a process
    the signal killed.
    """

    def __init__(self, signum, message):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class TrainingInterrupted(Interrupted):
    """Training stopped cleanly by a signal after backing up; `--resume` continues it."""
