"""Train a colourization net (grey CIFAR-10 class in, palette colours out).

The same program as `keras-cnn train-colorization`: the code lives in keras_cnn/commands/train_colorization.py,
and `--help` explains every flag. This wrapper keeps `python scripts/train_colorization.py` working.
"""

from keras_cnn.commands.train_colorization import main

if __name__ == "__main__":
    main()
