"""Train a DeepLabV3 segmenter.

The same program as `keras-cnn train-segmentation`: the code lives in keras_cnn/commands/train_segmentation.py,
and `--help` explains every flag. This wrapper keeps `python scripts/train_segmentation.py` working.
"""

from keras_cnn.commands.train_segmentation import main

if __name__ == "__main__":
    main()
