"""Evaluate a trained segmenter: loss, foreground IoU, mean IoU, pixel accuracy, "mIOU".

The same program as `keras-cnn evaluate-segmentation`: the code lives in keras_cnn/commands/evaluate_segmentation.py,
and `--help` explains every flag. This wrapper keeps `python scripts/evaluate_segmentation.py` working.
"""

from keras_cnn.commands.evaluate_segmentation import main

if __name__ == "__main__":
    main()
