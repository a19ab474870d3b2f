"""Convert torchvision's DeepLabV3-ResNet-50/101 weights (.pth) to a .keras segmenter.

The same program as `keras-cnn convert-torchvision`: the code lives in
keras_cnn/commands/convert_torchvision.py, and `--help` explains every flag.
This wrapper keeps `python scripts/convert_torchvision.py` working.
"""

from keras_cnn.commands.convert_torchvision import main

if __name__ == "__main__":
    main()
