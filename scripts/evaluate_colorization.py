"""Evaluate a trained colourization run on its validation images, beside the trivial baselines.

The same program as `keras-cnn evaluate-colorization`: the code lives in keras_cnn/commands/evaluate_colorization.py,
and `--help` explains every flag. This wrapper keeps `python scripts/evaluate_colorization.py` working.
"""

from keras_cnn.commands.evaluate_colorization import main

if __name__ == "__main__":
    main()
