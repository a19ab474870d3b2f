"""A trained model as export sees it: uint8 images in, named outputs out.

A `Servable` wraps a task model of either application with the TensorFlow
post-processing that turns what a client has (a batch of uint8 RGB images)
into named outputs. The models take RGB pixels and normalise them
themselves, so nothing here repeats their preprocessing. The SavedModel
signatures and the TFLite graphs are both built from a servable, so a server
and a phone compute the same thing. Servables come from
`keras_cnn.tasks.open_run(run_dir).servable()`.

- `ColorizerServable`: outputs "colours" (uint8 RGB, decoded with the palette)
  and "probabilities". The nets are fully convolutional: the SavedModel takes
  any size (padded to a multiple of 4 by repeating the edge pixels, then
  cropped back), TFLite a fixed square size.
- `SegmenterServable`: outputs "mask" and "probabilities". The model has a
  fixed input size; the SavedModel resizes any image to it and the results back.

The TFLite graphs (`tflite_outputs`, fixed size) return what an app needs
without decoding: "classes" (uint8 argmax per pixel: the palette colour or
the segment class), "logits" (float32, or int8 with a scale in the int8
file) and, for an argmax colourizer, "colours" (uint8 RGB, looked up in the
graph). `score` measures any of them against the truth (delta E, IoU).
"""


import numpy as np
import tensorflow as tf

from keras_cnn.errors import UserError
from keras_cnn.fileio import list_images, read_image, readable_images


def _resize_uint8(images, size):
    """uint8 image(s) (..., H, W, 3) -> (..., size, size, 3): bilinear with antialiasing, as training resized."""
    x = tf.image.resize(images, (size, size), method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)


def _crop_square(image):
    """The central square of one image (H, W, C)."""
    shape = tf.shape(image)
    side = tf.minimum(shape[0], shape[1])
    return tf.image.crop_to_bounding_box(image, (shape[0] - side) // 2, (shape[1] - side) // 2, side, side)


def _pad_edge(images, multiple):
    """Pads (N, H, W, C) at the bottom and right to multiples of `multiple`, repeating edge pixels."""
    static = images.shape[1:3]
    if all(d is not None and d % multiple == 0 for d in static):
        return images
    h, w = tf.shape(images)[1], tf.shape(images)[2]
    rows = tf.minimum(tf.range((h + multiple - 1) // multiple * multiple), h - 1)
    cols = tf.minimum(tf.range((w + multiple - 1) // multiple * multiple), w - 1)
    return tf.gather(tf.gather(images, rows, axis=1), cols, axis=2)


class Servable:
    """Base: a Keras model, its fixed export size and its metadata.

    Subclasses define `probabilities(images)` (fixed-size uint8 batch ->
    float32 class probabilities, the TFLite graph), `outputs(images)` (any
    size -> the SavedModel's named outputs), `metadata()` and
    `_split_images(split, count)` (the run's own training or validation images).
    """

    application = None
    output_names = ()
    # How one photo of any shape becomes the square export size: "centre_crop"
    # (crop the central square, then resize) or "stretch" (resize as is).
    image_fit = "centre_crop"

    def __init__(self, model, image_size, source, images_dir=None):
        self.model = model
        self.image_size = int(image_size)
        self.source = source
        self.images_dir = images_dir

    def fit(self, image):
        """One decoded uint8 image (H, W, 3) -> (S, S, 3) at the export size, per `image_fit`."""
        if self.image_fit == "centre_crop":
            image = _crop_square(image)
        return _resize_uint8(image, self.image_size)

    def fit_batch(self, images):
        return tf.map_fn(lambda im: self.fit(im), images,
                         fn_output_signature=tf.TensorSpec((self.image_size, self.image_size, 3),
                                                           tf.uint8))

    def images(self, split, count):
        """Up to `count` real uint8 images (N, S, S, 3) at the export size.

        `split` "train" feeds int8 calibration, "validation" the agreement
        checks. With `images_dir` both come from that folder (calibration from
        its first files, checks from its last), fitted as `fit` does.
        """
        if self.images_dir:
            paths = list_images(self.images_dir, "image folder")
            return self._load_files(paths[:count] if split == "train" else paths[::-1][:count])
        try:
            images = self._split_images(split, count)
        except UserError as e:
            raise UserError(f"cannot load the run's images for calibration and checks ({e}); "
                            "pass --images DIR") from None
        images = np.asarray(images, np.uint8)[:count]
        if len(images) and images.shape[1:3] != (self.image_size, self.image_size):
            images = self.fit_batch(tf.constant(images)).numpy()
        return images

    def _load_files(self, paths):
        """Image files -> uint8 (N, S, S, 3) fitted to the export size; undecodable files skipped."""
        arrays = []
        for path in readable_images(paths, "image folder") if paths else []:
            arrays.append(self.fit(tf.constant(read_image(path))).numpy())
        return np.stack(arrays) if arrays else np.zeros((0, self.image_size, self.image_size, 3), np.uint8)

    # === TFLite ===

    # Whether the app's result is the argmax of the logits (then int8 may clamp
    # logits that can never win; see `export.tflite`).
    decided_by_argmax = True

    def export_logits(self, images):
        """The logits of the TFLite graph (the model's, computed in an int8-friendly form where one exists)."""
        return self.logits(images)

    def tflite_outputs(self, images):
        """Fixed-size uint8 images -> the TFLite graph's outputs (see the module docstring)."""
        logits = tf.cast(self.export_logits(images), tf.float32)
        return {"logits": logits, "classes": tf.cast(tf.argmax(logits, axis=-1), tf.uint8)}

    def reference_outputs(self, images):
        """What the Keras model gives for `images`, under the names of `tflite_outputs`."""
        logits = self.logits(images)
        return {"logits": logits, "classes": tf.cast(tf.argmax(logits, axis=-1), tf.uint8)}

    def check_set(self, count):
        """Up to `count` held-out images (N, S, S, 3) and their truth (or None where there is none)."""
        images = self.images("validation", count)
        return images, self._truth(images, count)

    def _truth(self, images, count):
        return None

    def score(self, outputs, images, truth):
        """Task metrics of `outputs` (a dict as `tflite_outputs` gives) against `truth`; {} without truth."""
        raise NotImplementedError

    def base_metadata(self):
        import keras

        import keras_cnn

        return {
            "application": self.application,
            "model_class": type(self.model).__name__,
            "input": {"key": "images", "dtype": "uint8", "layout": "NHWC RGB"},
            "input_size": [self.image_size, self.image_size],
            "image_fit": self.image_fit,
            "outputs": list(self.output_names),
            "source": self.source,
            "versions": {"keras_cnn": keras_cnn.__version__, "tensorflow": tf.__version__,
                         "keras": keras.__version__},
        }


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

    def logits(self, images):
        return tf.cast(self.model(tf.cast(images, tf.float32), training=False), tf.float32)

    def probabilities(self, images):
        return tf.nn.softmax(self.logits(images), axis=-1)

    def outputs(self, images):
        from keras_cnn.colorization.palette import grey

        h, w = tf.shape(images)[1], tf.shape(images)[2]
        logits = self.logits(_pad_edge(images, self.SIZE_MULTIPLE))[:, :h, :w]
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
        from keras_cnn.export.int8_graph import colourizer_logits

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


class SegmenterServable(Servable):
    """A `DeepLabV3Segmenter` with its preprocessing and class names.

    The model has a fixed square input size: the SavedModel resizes each
    image to it (bilinear with antialiasing, as training did), and resizes
    the logits back to the image's own size before the softmax and argmax,
    as `keras_cnn.segmentation.predict` does.

    Args:
        model: a trained `DeepLabV3Segmenter`.
        cfg: the run's `SegmentationConfig` (data for calibration and checks).
        class_names: one name per class (default: "background" then
            "foreground" or "class_<i>").
        source, images_dir: as `ColorizerServable`.
        data_loader: `() -> SegmentationData` of the run (its pairs per split and mask decoder).
        flip_tta: export the segmenter with left-right flip test-time
            augmentation in the graph (`deeplab_v3.flip_averaged`: two passes
            per image), recorded as `flip_tta` in the metadata.
    """

    application = "segmentation"
    output_names = ("mask", "probabilities")
    image_fit = "stretch"

    def __init__(self, model, cfg, class_names=None, source=None, images_dir=None, data_loader=None,
                 flip_tta=False):
        height, width = model.image_size
        if height != width:
            raise UserError(f"segmenter input is {height}x{width}; export needs a square input size")
        self.segmenter = model
        self.flip_tta = bool(flip_tta)
        if flip_tta:
            from keras_cnn.segmentation.deeplab_v3 import flip_averaged

            model = flip_averaged(model)
        super().__init__(model, height, source or {}, images_dir)
        self.cfg = cfg
        n = model.num_classes
        if class_names is None:
            class_names = ["background"] + (["foreground"] if n == 2 else [f"class_{i}" for i in range(1, n)])
        if len(class_names) != n:
            raise UserError(f"{len(class_names)} class names given for a model of {n} classes")
        self.class_names = list(class_names)
        self.data_loader = data_loader
        self._data = None

    def logits(self, images):
        return tf.cast(self.model(tf.cast(images, tf.float32), training=False), tf.float32)

    def probabilities(self, images):
        return tf.nn.softmax(self.logits(images), axis=-1)

    def outputs(self, images):
        size = (self.image_size, self.image_size)
        shape = tf.shape(images)[1:3]
        same = tf.reduce_all(tf.equal(shape, size))
        # Resizing to the same size is not exactly the identity with
        # antialiasing, so images already at the model's size skip it.
        x = tf.cond(same, lambda: images, lambda: _resize_uint8(images, self.image_size))
        logits = self.logits(x)
        logits = tf.cond(same, lambda: logits, lambda: tf.image.resize(logits, shape, method="bilinear"))
        return {"mask": tf.cast(tf.argmax(logits, axis=-1), tf.uint8),
                "probabilities": tf.nn.softmax(logits, axis=-1)}

    def _split_images(self, split, count):
        if self._data is None:
            if self.data_loader is None:
                raise UserError("no data given")
            self._data = self.data_loader()
        pairs = self._pairs(split)
        return self._load_files([image for image, _ in pairs[:count]])

    def _pairs(self, split):
        splits = self._data.splits if hasattr(self._data, "splits") else self._data
        return splits.get(split) or splits.get("train") or []

    def _truth(self, images, count):
        """The validation masks (N, S, S) of the run's check images, resized as training resized them."""
        if self.images_dir or getattr(self._data, "decode_mask", None) is None:
            return None  # a plain image folder has no masks
        from keras_cnn.segmentation.data import load_examples

        pairs = self._pairs("validation")[:count]
        if len(pairs) != len(images):
            return None
        loaded, masks = load_examples(pairs, self._data.decode_mask, (self.image_size, self.image_size))
        if not np.array_equal(loaded, images):
            return None  # not the same photos: no truth rather than a wrong one
        return masks

    def score(self, outputs, images, truth):
        from keras_cnn.segmentation.metrics import confusion_matrix, confusion_scores

        n = self.model.num_classes
        scores = confusion_scores(confusion_matrix(truth, outputs["classes"], n))
        out = {"mean_iou": scores["mean_iou"], "pixel_accuracy": scores["pixel_accuracy"]}
        if n == 2:
            out["foreground_iou"] = scores["fg_iou"]
        return out

    def metadata(self):
        from keras_cnn.segmentation.preprocessing import CONSTANTS, FORMULAS

        mode = self.model.preprocessing
        meta = self.base_metadata()
        meta.update({
            # Applied inside the graph; described for apps that inspect inputs.
            "preprocessing": {"mode": mode, "formula": FORMULAS[mode], "in_graph": True, **CONSTANTS[mode]},
            "class_names": self.class_names,
            "num_classes": self.model.num_classes,
            "backbone": type(self.segmenter.backbone).__name__,
            "output_stride": self.segmenter.backbone.output_stride,
            "flip_tta": self.flip_tta,
        })
        return meta
