"""Send photos to a running TensorFlow Serving over REST or gRPC and save what comes back.

The same program as `keras-cnn serving-client`: the code lives in keras_cnn/commands/serving_client.py,
and `--help` explains every flag. This wrapper keeps `python scripts/serving_client.py` working.
"""

from keras_cnn.commands.serving_client import main

if __name__ == "__main__":
    main()
