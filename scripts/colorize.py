"""Colourize a photo or a folder of photos with a trained net, writing PNGs.

The same program as `keras-cnn colorize`: the code lives in keras_cnn/commands/colorize.py,
and `--help` explains every flag. This wrapper keeps `python scripts/colorize.py` working.
"""

from keras_cnn.commands.colorize import main

if __name__ == "__main__":
    main()
