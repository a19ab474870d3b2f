"""Run folders for the export tests, made in seconds without training.

`colour_run` and `segmenter_run` write what a finished training run leaves
behind (config.json, the model as best.keras, palette.npy, the data folder
the config points at), with randomly initialised weights whose BatchNorm
statistics are moved away from 0 / 1 so that the exported graphs really carry
them. The export code cannot tell these folders from trained ones.
"""

import dataclasses
import os

import keras
import numpy as np

from keras_cnn.config import config_path, save_config
from tests.helpers import write_images


def blocky_images(n, size=32, seed=0):
    """uint8 (n, size, size, 3): coarse random colour blocks plus noise, more image-like than noise."""
    rng = np.random.RandomState(seed)
    blocks = rng.randint(0, 256, (n, size // 8, size // 8, 3)).repeat(8, axis=1).repeat(8, axis=2)
    return np.clip(blocks + rng.randint(-20, 21, blocks.shape), 0, 255).astype(np.uint8)


def _settle_batchnorm(model, x):
    for _ in range(3):
        model(x, training=True)


def colour_run(root, model="unet", num_filters=8, palette_space="rgb", decode="argmax",
               downsize_input=False, n_images=24, seed=0):
    """A colourization run folder `root/run` over images in `root/images`; returns (run_dir, images)."""
    from keras_cnn.colorization.colorizer import Colorizer
    from keras_cnn.colorization.config import ColorizationConfig
    from keras_cnn.colorization.models import build_model
    from keras_cnn.colorization.palette import fit_palette, save_palette

    images = blocky_images(n_images, seed=seed)
    images_dir = write_images(os.path.join(root, "images"), images)
    run_dir = os.path.join(root, "run")
    os.makedirs(run_dir)
    cfg = ColorizationConfig(source="folder", data_dir=images_dir, model=model, num_filters=num_filters,
                             palette_space=palette_space, decode=decode, downsize_input=downsize_input,
                             val_fraction=0.25, num_colours=12)
    save_config(cfg, config_path(run_dir), task="colorization")
    palette = fit_palette(images, 12, palette_space, seed)
    save_palette(os.path.join(run_dir, "palette.npy"), palette)
    keras.utils.set_random_seed(seed)
    net = build_model(model, num_filters=num_filters, num_colours=len(palette),
                      num_in_channels=3 if downsize_input else 1)
    model = Colorizer(net, "downsize" if downsize_input else "grey")
    _settle_batchnorm(model, images[:8])
    model.save(os.path.join(run_dir, "best.keras"))
    return run_dir, images


def segmenter_run(root, image_size=32, n_pairs=12, seed=0):
    """A segmentation run folder `root/run` over `root/data/{images,masks}`; returns run_dir.

    The photos have several sizes and aspect ratios, as real ones do; masks
    are 0/255 PNGs at half the photo's size (as the Weizmann horses').
    """
    from PIL import Image

    from keras_cnn.segmentation.config import PRESETS
    from keras_cnn.segmentation.deeplab_v3 import DeepLabV3Segmenter
    from keras_cnn.segmentation.registry import make_backbone

    rng = np.random.RandomState(seed)
    data_dir = os.path.join(root, "data")
    os.makedirs(os.path.join(data_dir, "images"))
    os.makedirs(os.path.join(data_dir, "masks"))
    for i in range(n_pairs):
        h, w = [(48, 64), (40, 40), (64, 48)][i % 3]
        image = blocky_images(1, 64, seed + i)[0][:h, :w]
        Image.fromarray(image).save(os.path.join(data_dir, "images", f"p{i:03d}.jpg"), quality=95)
        mask = (rng.rand(h // 2, w // 2) > 0.5).astype(np.uint8) * 255
        Image.fromarray(mask).save(os.path.join(data_dir, "masks", f"p{i:03d}.png"))
    run_dir = os.path.join(root, "run")
    os.makedirs(run_dir)
    cfg = dataclasses.replace(PRESETS["smoke"], data_dir=data_dir, image_size=image_size, max_examples=0)
    save_config(cfg, config_path(run_dir), task="segmentation")
    keras.utils.set_random_seed(seed)
    model = DeepLabV3Segmenter(make_backbone("tiny", image_size, cfg.output_stride), 2,
                               aspp_rates=(1, 2, 3), aspp_channels=16, dropout=0.1, name="deeplab_v3")
    _settle_batchnorm(model, blocky_images(4, image_size, seed).astype(np.float32))
    model.save(os.path.join(run_dir, "best.keras"))
    return run_dir


def grey_coded_images(n, colours, size=16, block=4, seed=0):
    """uint8 (n, size, size, 3): blocks of the given colours (+-2 noise), a colour's grey telling it apart."""
    rng = np.random.RandomState(seed)
    side = size // block
    index = rng.randint(0, len(colours), (n, side, side)).repeat(block, axis=1).repeat(block, axis=2)
    images = np.asarray(colours, np.float64)[index] + rng.randint(-2, 3, (n, size, size, 3))
    return np.clip(np.round(images), 0, 255).astype(np.uint8)


def trained_colour_run(root, num_colours=8, n_images=256, epochs=6, seed=0):
    """A UNet run folder trained for seconds on synthetic photos whose colour follows from their grey.

    The palette's colours have greys 8/256 apart, so the net's decisions hinge
    on grey differences finer than an int8 tensor holds once it shares a
    scale with ReLU activations: a test of what int8 export keeps. Reaches
    about 97% validation accuracy in 6 epochs. Returns (run_dir, palette).
    """
    import tensorflow as tf

    from keras_cnn.colorization.colorizer import Colorizer
    from keras_cnn.colorization.config import ColorizationConfig
    from keras_cnn.colorization.models import build_model
    from keras_cnn.colorization.palette import Palette, save_palette

    rng = np.random.RandomState(seed)
    colours = []
    for g in 96 + 8 * np.arange(num_colours):
        while True:
            c = g + rng.randint(-60, 61, 3)
            c = c - (c.mean() - g)
            if c.min() >= 0 and c.max() <= 255:
                colours.append(c)
                break
    palette = Palette(np.asarray(colours) / 256.0)
    images = grey_coded_images(n_images, colours, seed=seed + 1)
    images_dir = write_images(os.path.join(root, "images"), images)
    run_dir = os.path.join(root, "run")
    os.makedirs(run_dir)
    cfg = ColorizationConfig(source="folder", data_dir=images_dir, model="unet", num_filters=8,
                             num_colours=num_colours, val_fraction=0.25)
    save_config(cfg, config_path(run_dir), task="colorization")
    save_palette(os.path.join(run_dir, "palette.npy"), palette)
    keras.utils.set_random_seed(seed)
    model = Colorizer(build_model("unet", num_filters=8, num_colours=num_colours))
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    labels = palette.labels(tf.constant(images)).numpy()
    model.fit(images.astype(np.float32), labels, batch_size=32, epochs=epochs, verbose=0)
    # BatchNorm's moving statistics lag this short a run: set them from one pass.
    norms = [layer for layer in model.net.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    model(images.astype(np.float32), training=True)
    for layer in norms:
        layer.momentum = 0.9
    model.save(os.path.join(run_dir, "best.keras"))
    return run_dir, palette
