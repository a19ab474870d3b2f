"""
Title: Segmenting horses with DeepLabV3 on a pretrained EfficientNet-Lite0
Author: keras_cnn
Description: Object vs background from images and masks: a DeepLabV3+ head on frozen ImageNet features.
Accelerator: None (two CPU cores are enough)

Run (5.5 minutes on 2 Intel Xeon cores shared with other jobs; docs/PYTHON_API.md has the figures):

    python examples/segmentation_deeplabv3.py --data-dir ../shared/data/weizmann-horses

`--backbone tiny --image-size 64 --epochs 1 --max-images 16` runs the whole
page in seconds (the tiny backbone has no pretrained weights).
"""

"""
## Introduction

DeepLabV3 (Chen et al. 2017, "Rethinking Atrous Convolution for Semantic
Image Segmentation") classifies every pixel from a backbone's features,
looked at by atrous convolutions of several rates (ASPP). With a decoder
that joins the backbone's stride-4 features (DeepLabV3+, Chen et al. 2018)
the masks follow thin parts such as legs. Here the backbone is
EfficientNet-Lite0 with ImageNet weights, frozen: only the head learns,
which needs few images. The data is a folder with `images/NAME.jpg` and
`masks/NAME.png` (0 = background, 255 = object), such as the Weizmann horses.
"""

"""
## Setup
"""

import argparse
import math
import os

import keras
import numpy as np
import tensorflow as tf

import keras_cnn
from keras_cnn import segmentation

SHARED = os.environ.get("KERAS_CNN_SHARED_DATA") or os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                                                                   "data")
parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
parser.add_argument("--data-dir", default=os.path.join(SHARED, "weizmann-horses"),
                    help="a folder with images/ and masks/ (default: the shared Weizmann horses)")
parser.add_argument("--backbone", default="efficientnet_lite0", choices=["efficientnet_lite0", "tiny"])
parser.add_argument("--image-size", type=int, default=160)
parser.add_argument("--epochs", type=int, default=15)
parser.add_argument("--batch-size", type=int, default=8)
parser.add_argument("--max-images", type=int, default=0, help="train on this many pairs only (0: all)")
parser.add_argument("--out-dir", default="example_out/segmentation")
args = parser.parse_args()
if not os.path.isdir(args.data_dir):
    parser.error(f"--data-dir {args.data_dir}: no such folder")
keras.utils.set_random_seed(0)

"""
## Data

The pairs are split as `keras-cnn train-segmentation` splits them (a
quarter held out, chosen by file name), so the figures compare with the
command line's. Each photo is resized to the model's input size
(bilinearly, with antialiasing), each mask with nearest-neighbour sampling,
and 255 becomes class 1. Training pairs are flipped left-right at random.
"""

train_pairs, val_pairs = segmentation.split_pairs(segmentation.folder_pairs(args.data_dir), val_fraction=0.25)
if args.max_images:
    train_pairs = train_pairs[:args.max_images]
print(f"{len(train_pairs)} training and {len(val_pairs)} validation pairs")
size = (args.image_size, args.image_size)


def load(image_path, mask_path):
    image = tf.io.decode_image(tf.io.read_file(image_path), channels=3, expand_animations=False)
    image = tf.image.resize(image, size, method="bilinear", antialias=True)  # float32 RGB 0-255
    mask = tf.io.decode_png(tf.io.read_file(mask_path), channels=1)
    mask = tf.image.resize(mask, size, method="nearest")[..., 0]
    return image, tf.cast(mask > 127, tf.int32)


def random_flip(image, mask):
    flip = tf.random.uniform(()) < 0.5
    return (tf.where(flip, tf.reverse(image, [1]), image),
            tf.where(flip, tf.reverse(mask, [1]), mask))


def make_dataset(pairs, training):
    images, masks = zip(*pairs)
    ds = tf.data.Dataset.from_tensor_slices((list(images), list(masks)))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).cache()
    if training:
        ds = ds.shuffle(len(pairs), seed=0).map(random_flip, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(args.batch_size).prefetch(tf.data.AUTOTUNE)


train_ds = make_dataset(train_pairs, training=True)
val_ds = make_dataset(val_pairs, training=False)

"""
## Model

The backbone at output stride 16 (a 10x10 feature map at 160 px), frozen;
ASPP with rates 2/4/6 suits a map that small. The segmenter takes RGB
pixels 0-255 and normalises them as its backbone expects in its first layer.
"""

pretrained = args.backbone.startswith("efficientnet")
backbone = segmentation.make_backbone(args.backbone, args.image_size, output_stride=16,
                                      weights="imagenet" if pretrained else None)
backbone.trainable = False
model = segmentation.DeepLabV3Segmenter(
    backbone, num_classes=2, aspp_rates=(2, 4, 6), aspp_channels=96, dropout=0.1,
    low_level_channels=48 if pretrained else 0,  # the DeepLabV3+ decoder on the stride-4 features
    name="deeplab_v3")
model.summary()

"""
## Compile and train

Pixel-wise cross-entropy on the logits; foreground IoU, mean IoU and pixel
accuracy as Keras metrics. Adam with a cosine decay over the run.
"""

steps = args.epochs * math.ceil(len(train_pairs) / args.batch_size)
model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(2e-3, steps)),
              loss=segmentation.segmentation_loss(),
              metrics=segmentation.segmentation_metrics(num_classes=2))
model.fit(train_ds, validation_data=val_ds, epochs=args.epochs, verbose=2)

"""
## Evaluate

On the held-out pairs at the model's input size; `fg_iou` is the
intersection over union of the horse class over all held-out pixels.
"""

scores = model.evaluate(val_ds, return_dict=True, verbose=0)
print("validation: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))

"""
## Segment a photo at its own size

`segment` resizes the photo to the model, and the logits back to the photo
before the argmax, so the mask lines up with the original.
"""

os.makedirs(args.out_dir, exist_ok=True)
photo = keras_cnn.read_image(val_pairs[0][0])
labels = model.segment(photo)
overlay = np.where(labels[..., None] == 1, (0.5 * photo + [127, 0, 0]).astype(np.uint8), photo)
keras.utils.save_img(os.path.join(args.out_dir, "photo_overlay.png"), overlay)
print(f"{os.path.basename(val_pairs[0][0])}: {photo.shape[1]}x{photo.shape[0]}, "
      f"{labels.mean():.1%} of the pixels are horse")

"""
## Export

The Keras model (`.keras`, loadable with `keras.saving.load_model` after
`import keras_cnn`) and a SavedModel for TensorFlow Serving; then check that
both compute what the model computes.
"""

model.save(os.path.join(args.out_dir, "segmenter.keras"))
model.export(os.path.join(args.out_dir, "saved_model"), verbose=False)

batch = next(iter(val_ds))[0][:2]
reloaded = keras.saving.load_model(os.path.join(args.out_dir, "segmenter.keras"), compile=False)
np.testing.assert_allclose(reloaded(batch), model(batch), atol=1e-4)
served = tf.saved_model.load(os.path.join(args.out_dir, "saved_model"))
np.testing.assert_allclose(served.serve(batch), model(batch), atol=1e-4)
print(f"exported to {args.out_dir}: segmenter.keras, saved_model/ (keras_cnn {keras_cnn.__version__})")
