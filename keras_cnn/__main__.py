"""`python -m keras_cnn <command> ...`, the same as the `keras-cnn` command."""

from keras_cnn.commands import main

main()
