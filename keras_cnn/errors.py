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
