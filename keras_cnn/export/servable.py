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

    def metadata(self):
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
        data_loader: `() -> {split: [(image_path, mask_path), ...]}` of the run.
    """

    application = "segmentation"
    output_names = ("mask", "probabilities")
    image_fit = "stretch"

    def __init__(self, model, cfg, class_names=None, source=None, images_dir=None, data_loader=None):
        height, width = model.image_size
        if height != width:
            raise UserError(f"segmenter input is {height}x{width}; export needs a square input size")
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
        pairs = self._data.get(split) or self._data.get("train") or []
        return self._load_files([image for image, _ in pairs[:count]])

    def metadata(self):
        from keras_cnn.segmentation.preprocessing import CONSTANTS, FORMULAS

        mode = self.model.preprocessing
        meta = self.base_metadata()
        meta.update({
            # Applied inside the graph; described for apps that inspect inputs.
            "preprocessing": {"mode": mode, "formula": FORMULAS[mode], "in_graph": True, **CONSTANTS[mode]},
            "class_names": self.class_names,
            "num_classes": self.model.num_classes,
            "backbone": type(self.model.backbone).__name__,
            "output_stride": self.model.backbone.output_stride,
        })
        return meta
