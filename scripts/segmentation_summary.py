"""Parameter counts and shapes of DeepLabV3 on each backbone (random weights, no download).

The same program as `keras-cnn segmentation-summary`: the code lives in keras_cnn/commands/segmentation_summary.py,
and `--help` explains every flag. This wrapper keeps `python scripts/segmentation_summary.py` working.
"""

from keras_cnn.commands.segmentation_summary import main

if __name__ == "__main__":
    main()
