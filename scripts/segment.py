"""Segment a photo or a folder of photos with a trained segmenter.

The same program as `keras-cnn segment`: the code lives in keras_cnn/commands/segment.py,
and `--help` explains every flag. This wrapper keeps `python scripts/segment.py` working.
"""

from keras_cnn.commands.segment import main

if __name__ == "__main__":
    main()
