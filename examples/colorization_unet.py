"""
Title: Colourizing photos with a UNet, as per-pixel classification
Author: keras_cnn
Description: A palette, the course's UNet on your own tf.data pipeline, scored against the grey input, exported.
Accelerator: None (two CPU cores are enough)

Run (9 minutes on 2 Intel Xeon cores shared with other jobs; docs/PYTHON_API.md has the figures):

    python examples/colorization_unet.py --data-dir ../shared/data/cifar10-horse-train

`--epochs 1 --max-images 64` runs the whole page in seconds.
"""

"""
## Introduction

A colourizer sees a grey photo and says, for every pixel, which of K palette
colours it had: colourization as per-pixel classification (the University of
Toronto CSC413/2516 assignment; Zhang et al., "Colorful Image Colorization",
ECCV 2016). The palette is K colours found by k-means on the training
pixels; a pixel's label is its nearest palette colour, and the net is
trained with a per-pixel cross-entropy.
"""

"""
## Setup
"""

import argparse
import os

import keras
import numpy as np
import tensorflow as tf

import keras_cnn
from keras_cnn import colorization
from keras_cnn.data.cifar10 import load_folder

SHARED = os.environ.get("KERAS_CNN_SHARED_DATA") or os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                                                                   "data")
parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
parser.add_argument("--data-dir", default=os.path.join(SHARED, "cifar10-horse-train"),
                    help="a folder of photos of any size (default: the shared CIFAR-10 horses)")
parser.add_argument("--epochs", type=int, default=25)
parser.add_argument("--batch-size", type=int, default=100)
parser.add_argument("--max-images", type=int, default=0, help="train on this many photos only (0: all)")
parser.add_argument("--out-dir", default="example_out/colorization")
args = parser.parse_args()
if not os.path.isdir(args.data_dir):
    parser.error(f"--data-dir {args.data_dir}: no such folder")
keras.utils.set_random_seed(0)

"""
## Data

Every photo is centre-cropped and resized to 32x32; a fixed 10% (seed 0) is
held out for validation, the split `keras-cnn train-colorization --dataset
folder` makes, so the figures compare with the command line's.
"""

train_images, val_images = load_folder(args.data_dir, val_fraction=0.1, seed=0)
if args.max_images:
    train_images = train_images[:args.max_images]
print(f"{len(train_images)} training and {len(val_images)} validation photos, uint8 {train_images.shape[1:]}")

"""
The palette: 24 colours, k-means on the training pixels. `palette.labels`
is a TensorFlow op, so the labels are computed inside the `tf.data` pipeline.
The images go in as uint8 RGB: the model turns them grey itself.
"""

palette = colorization.fit_palette(train_images, k=24)


def with_labels(images):
    return images, palette.labels(images)


train_ds = (tf.data.Dataset.from_tensor_slices(train_images)
            .shuffle(len(train_images), seed=0)
            .batch(args.batch_size)
            .map(with_labels, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))
val_ds = (tf.data.Dataset.from_tensor_slices(val_images)
          .batch(args.batch_size)
          .map(with_labels, num_parallel_calls=tf.data.AUTOTUNE)
          .prefetch(tf.data.AUTOTUNE))

"""
## Model

The course's UNet (two stride-2 convs down, two transposed convs up, two skip
connections) inside a `Colorizer`, whose first layer converts RGB pixels to
the grey input the net sees.
"""

model = colorization.Colorizer(colorization.UNet(num_colours=len(palette)), name="unet_colorizer")
model.summary()

"""
## Compile and train
"""

model.compile(optimizer=keras.optimizers.Adam(1e-3),
              loss=colorization.PixelCrossEntropy(),
              metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
model.fit(train_ds, validation_data=val_ds, epochs=args.epochs, verbose=2)

"""
## Evaluate

Pixel accuracy against the palette labels, and the colour error of the
decoded image against the true colours (mean CIE76 delta E, lower is better;
PSNR), beside doing nothing: the grey photo shown as a colour image.
"""

scores = colorization.evaluate_colours(model, val_images, palette)
grey = colorization.baselines(val_images, palette)["grey_input"]
print(f"validation: accuracy {scores['accuracy']:.1%}, delta E {scores['delta_e']:.2f}, "
      f"PSNR {scores['psnr']:.2f} dB")
print(f"grey input: accuracy {grey['accuracy']:.1%}, delta E {grey['delta_e']:.2f}, PSNR {grey['psnr']:.2f} dB")
print("delta E " + ("beats the grey input" if scores["delta_e"] < grey["delta_e"]
                    else "does not beat the grey input yet"))

"""
## Colourize a photo of any size

The net is fully convolutional: a photo of any size is colourized at its own
size (big ones in tiles), here the first validation photo scaled up 8x.
"""

os.makedirs(args.out_dir, exist_ok=True)
photo = np.uint8(np.clip(np.round(tf.image.resize(val_images[0], (256, 256), method="bicubic")), 0, 255))
colours = colorization.colorize(model, palette, photo[None])[0]
keras.utils.save_img(os.path.join(args.out_dir, "photo_colours.png"), np.concatenate([photo, colours], axis=1))

"""
## Export

The Keras model (`.keras`, loadable with `keras.saving.load_model` after
`import keras_cnn`) with its palette, and a SavedModel for TensorFlow
Serving. Then check the exports: they compute what the model computes.
"""

model.save(os.path.join(args.out_dir, "colorizer.keras"))
colorization.save_palette(os.path.join(args.out_dir, "palette.npy"), palette)
model.export(os.path.join(args.out_dir, "saved_model"), verbose=False)

batch = val_images[:4].astype(np.float32)
reloaded = keras.saving.load_model(os.path.join(args.out_dir, "colorizer.keras"), compile=False)
np.testing.assert_allclose(reloaded(batch), model(batch), atol=1e-4)
served = tf.saved_model.load(os.path.join(args.out_dir, "saved_model"))
np.testing.assert_allclose(served.serve(batch), model(batch), atol=1e-4)
print(f"exported to {args.out_dir}: colorizer.keras, palette.npy, saved_model/ (keras_cnn {keras_cnn.__version__})")
