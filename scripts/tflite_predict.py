"""Run an exported .tflite on a photo as a phone app would (LiteRT + NumPy, no TensorFlow).

The same program as `keras-cnn tflite-predict`: the code lives in keras_cnn/commands/tflite_predict.py,
and `--help` explains every flag. This wrapper keeps `python scripts/tflite_predict.py` working.
"""

from keras_cnn.commands.tflite_predict import main

if __name__ == "__main__":
    main()
