"""Export a trained run (colourizer or segmenter) for TF Serving and for phones.

The same program as `keras-cnn export`: the code lives in keras_cnn/commands/export.py,
and `--help` explains every flag. This wrapper keeps `python scripts/export.py` working.
"""

from keras_cnn.commands.export import main

if __name__ == "__main__":
    main()
