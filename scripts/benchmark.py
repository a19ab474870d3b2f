"""Measure quality and speed: colourizers, their exports, and the segmenter; print tables, write JSON.

The same program as `keras-cnn benchmark`: the code lives in keras_cnn/commands/benchmark.py,
and `--help` explains every flag. This wrapper keeps `python scripts/benchmark.py` working.
"""

from keras_cnn.commands.benchmark import main

if __name__ == "__main__":
    main()
