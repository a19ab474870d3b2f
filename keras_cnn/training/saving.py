"""Loading `.keras` files of this package with one-line errors."""

import os
import zipfile

import keras

from keras_cnn.errors import UserError
from keras_cnn.zip_bounds import check_archive


def _check_archive(path):
    """A one-line `UserError` unless `path` is a whole zip archive holding a model's config.json.

    Keras reports any archive it cannot open, a truncated one included, as
    "File not found", which sends the user looking for a file that is there.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            # What the archive unpacks to is bounded before Keras reads a member (a zip bomb).
            check_archive(archive, path, "model file")
    except UserError:  # a ValueError too: the bound's own line
        raise
    except (zipfile.BadZipFile, EOFError, ValueError):
        raise UserError(f"{path}: not a whole .keras file (a .keras file is a zip archive; this one is cut "
                        f"short or is not one, {os.path.getsize(path):,} bytes); save or copy it again") from None
    if "config.json" not in names:
        raise UserError(f"{path}: a zip archive without config.json inside, not a .keras model file")


def load_model(path):
    """Loads a `.keras` file of this package with a one-line error when it cannot.

    The model comes back uncompiled: every use of a saved model here (predict,
    evaluate, export, fine-tuning from it) compiles it for its own purpose,
    and training resumes from the run's backup, not from these files.
    Compiling on load would rebuild the saved optimizer over the model's
    weights as they deserialise, all trainable (frozen layers are a training
    choice, not part of the architecture), and Keras warns "Skipping variable
    loading for optimizer" for every model fine-tuned with frozen layers.

    Keras reads the archive's members into memory whole, so what they unpack
    to is checked first (`keras_cnn.zip_bounds`): a file padded with
    gigabytes of zeros is one line, not gigabytes of memory.
    """
    from keras_cnn import register_keras_objects

    register_keras_objects()
    if not os.path.exists(path):
        raise UserError(f"{path}: model file does not exist")
    if os.path.isfile(path):  # (Keras also loads a SavedModel folder, in which case it says what is wrong)
        _check_archive(path)
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as e:  # Keras raises many types for a bad archive
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: cannot load model ({first[:200]})") from None
