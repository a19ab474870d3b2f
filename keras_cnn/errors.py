"""The one exception type users see.

Library code raises `UserError` for anything a user can fix (a bad file, a
wrong flag, no network). Scripts catch it and print its message on one line
with a non-zero exit (`keras_cnn.cli.main`), so nobody gets a stack trace from
deep inside TensorFlow for a typo.
"""


class UserError(Exception):
    """A problem with the user's input, worded for the user."""
