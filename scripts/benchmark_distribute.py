"""Training images/s for each tf.distribute strategy, mixed precision and XLA on/off, side by side.

The same program as `keras-cnn benchmark-distribute`: the code lives in keras_cnn/commands/benchmark_distribute.py,
and `--help` explains every flag. This wrapper keeps `python scripts/benchmark_distribute.py` working.
"""

from keras_cnn.commands.benchmark_distribute import main

if __name__ == "__main__":
    main()
