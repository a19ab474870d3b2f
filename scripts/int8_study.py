"""What each int8 export step buys on a trained run: agreement, delta E / IoU, size, latency.

The same program as `keras-cnn int8-study`: the code lives in keras_cnn/commands/int8_study.py,
and `--help` explains every flag. This wrapper keeps `python scripts/int8_study.py` working.
"""

from keras_cnn.commands.int8_study import main

if __name__ == "__main__":
    main()
