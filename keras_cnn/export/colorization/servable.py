"""`ColorizerServable`: a colourizer with its palette and decoding, as export sees it.

Outputs "colours" (uint8 RGB, decoded with the palette) and "probabilities".
The nets are fully convolutional: the SavedModel takes any size (padded to a
multiple of 4 by repeating the edge pixels, then cropped back), TFLite a
fixed square size.
"""

import numpy as np
import tensorflow as tf

from keras_cnn.errors import UserError
from keras_cnn.export.servable import Servable, pad_edge


class ColorizerServable(Servable):
    """A colourization net with its palette and decoding.

    Args:
        model: a `Colorizer`.
        palette: its `Palette`.
        cfg: the run's `ColorizationConfig` (decoding, super-resolution mode, data).
        image_size: the fixed square size of TFLite and of encoded-bytes input
            (a multiple of 4; the nets halve the size twice).
        source: where the model came from, for the metadata.
        images_dir: a folder of real images for calibration and checks,
            instead of the run's own data.
        data_loader: `() -> (train, validation)` uint8 images of the run.
    """

    application = "colorization"
    output_names = ("colours", "probabilities")
    SIZE_MULTIPLE = 4

    def __init__(self, model, palette, cfg, image_size=32, source=None, images_dir=None, data_loader=None):
        if image_size < self.SIZE_MULTIPLE or image_size % self.SIZE_MULTIPLE:
            raise UserError(f"colourizer export size must be a positive multiple of "
                            f"{self.SIZE_MULTIPLE}, got {image_size}")
        super().__init__(model, image_size, source or {}, images_dir)
        self.palette = palette
        self.cfg = cfg
        self.data_loader = data_loader
        self._data = None

    def outputs(self, images):
        from keras_cnn.colorization.palette import grey

        h, w = tf.shape(images)[1], tf.shape(images)[2]
        logits = self.logits(pad_edge(images, self.SIZE_MULTIPLE))[:, :h, :w]
        colours = self.palette.decode(logits, grey(images), self.cfg.decode, self.cfg.temperature)
        return {"colours": colours, "probabilities": tf.nn.softmax(logits, axis=-1)}

    def _split_images(self, split, count):
        if self._data is None:
            if self.data_loader is None:
                raise UserError("no data given")
            self._data = self.data_loader()
        train, val = self._data
        return (train if split == "train" or not len(val) else val)[:count]

    # === TFLite ===

    @property
    def decided_by_argmax(self):
        return self.cfg.decode == "argmax"

    def export_logits(self, images):
        from keras_cnn.export.colorization.int8_graph import colourizer_logits

        return tf.cast(colourizer_logits(self.model, tf.cast(images, tf.float32)), tf.float32)

    def colour_table(self):
        """uint8 (G, K, 3): the RGB colour of palette class k at grey index g (argmax decoding).

        RGB palettes do not depend on the grey level (G = 1); ab palettes take
        their lightness from it, indexed by R + G + B (G = 766 levels, since
        grey = (R + G + B) / 768). Each entry is `Palette.decode` of a one-hot
        pixel, so the lookup equals the SavedModel's decoding exactly.
        """
        from keras_cnn.colorization.palette import grey

        with tf.init_scope():  # eager even while a graph is traced: the table is a constant
            colours = tf.constant(self.palette.colours)
            k = len(self.palette)
            if self.palette.space == "rgb":
                return self.palette.colours_to_rgb(colours[None], None).numpy()
            levels = np.arange(766, dtype=np.int64)
            # A pixel per level with R + G + B = level, then grey() exactly as decoding computes it.
            pixels = np.stack([levels // 3 + (levels % 3 > 0), levels // 3 + (levels % 3 > 1), levels // 3], -1)
            g = grey(tf.constant(pixels.astype(np.uint8)))  # (766, 1)
            return self.palette.colours_to_rgb(tf.broadcast_to(colours[None], (766, k, 2)),
                                               tf.broadcast_to(g[:, None, :], (766, k, 1))).numpy()

    def lookup_colours(self, images, classes):
        """uint8 RGB (N, S, S, 3) of class ids `classes` (N, S, S) with `colour_table`, integer ops only."""
        table = self.colour_table()
        flat = tf.constant(table.reshape(-1, 3))
        index = tf.cast(classes, tf.int32)
        if len(table) > 1:
            level = tf.reduce_sum(tf.cast(images, tf.int32), axis=-1)
            index = level * len(self.palette) + index
        return tf.gather(flat, index)

    def tflite_outputs(self, images):
        out = super().tflite_outputs(images)
        if self.decided_by_argmax:
            out["colours"] = self.lookup_colours(images, out["classes"])
        return out

    def reference_outputs(self, images):
        from keras_cnn.colorization.palette import grey

        out = super().reference_outputs(images)
        out["colours"] = self.palette.decode(out["logits"], grey(images), self.cfg.decode, self.cfg.temperature)
        return out

    def _truth(self, images, count):
        return images  # a colour photo is its own truth

    def decode(self, outputs, images):
        """uint8 RGB of `outputs`: its "colours", or the palette decoding of its "logits"."""
        from keras_cnn.colorization.palette import grey

        if "colours" in outputs:
            return np.asarray(outputs["colours"], np.uint8)
        images = tf.constant(np.asarray(images, np.uint8))
        if "logits" not in outputs and self.decided_by_argmax:  # class ids alone decode by argmax
            logits = tf.one_hot(np.asarray(outputs["classes"], np.int32), len(self.palette))
        else:
            logits = tf.constant(outputs["logits"], tf.float32)
        return self.palette.decode(logits, grey(images), self.cfg.decode, self.cfg.temperature).numpy()

    def score(self, outputs, images, truth):
        from keras_cnn.colorization.evaluate import colour_errors

        colours = self.decode(outputs, images)
        de, ps = colour_errors(tf.constant(truth), tf.constant(colours))
        n = len(truth)
        return {"delta_e": float(de) / (n * truth.shape[1] * truth.shape[2]), "psnr": float(ps) / n}

    def metadata(self):
        from keras_cnn.colorization.predict import receptive_radius

        meta = self.base_metadata()
        meta.update({
            "preprocessing": ("4x downsized colour image (average-pool 2 twice, nearest 4x "
                              "upsampling) / 256" if self.cfg.downsize_input
                              else "grey = mean(R, G, B) / 256"),
            "palette": {"space": self.palette.space,
                        "units": "RGB / 256" if self.palette.space == "rgb" else "CIE Lab a, b",
                        "colours": self.palette.colours.tolist()},
            "class_names": [f"colour_{i}" for i in range(len(self.palette))],
            "decode": self.cfg.decode,
            "temperature": self.cfg.temperature,
            "downsize_input": self.cfg.downsize_input,
            # How far an output pixel looks (None: the whole image), so an app can colourize a photo of
            # any size in tiles of the fixed input size, as keras_cnn.export.litert_runtime.colorize does.
            "receptive_radius": receptive_radius(self.model),
            "photos_of_any_size": ("tiles of the input size on the 4-pixel grid; each keeps its core and "
                                   "drops a border of receptive_radius rounded up to 4 pixels (at most "
                                   "what leaves a 4-pixel core; a quarter of the input size when null)"),
        })
        return meta
