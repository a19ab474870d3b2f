"""Fine-tune a trained colourizer so that its int8 TFLite file decides as it does; writes a new run.

The same program as `keras-cnn finetune-int8`: the code lives in keras_cnn/commands/finetune_int8.py,
and `--help` explains every flag. This wrapper keeps `python scripts/finetune_int8.py` working.
"""

from keras_cnn.commands.finetune_int8 import main

if __name__ == "__main__":
    main()
