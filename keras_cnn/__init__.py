"""keras_cnn: colourization and DeepLabV3 segmentation with Keras 3 / TensorFlow.

Sub-packages:
    keras_cnn.data          data sources (CIFAR-10, image folders, Oxford 17 Flowers)
    keras_cnn.colorization  palette, colour maths, the course's nets, train/eval/predict
    keras_cnn.segmentation  DeepLabV3 backbones, segmenter, metrics, train/eval/predict
    keras_cnn.export        SavedModel (TF Serving) and TFLite export, clients
Shared plumbing lives at the top level: config, training, distribute, plots, fileio.
"""

__version__ = "0.1.0"
