"""`SegmenterServable`: a DeepLabV3 segmenter with its class names, as export sees it.

Outputs "mask" and "probabilities". The model has a fixed input size; the
SavedModel resizes any image to it and the results back.
"""

import numpy as np
import tensorflow as tf

from keras_cnn.errors import UserError
from keras_cnn.export.servable import Servable, resize_uint8


def checked_class_names(class_names, n):
    """`class_names` (None: "background", then "foreground" or "class_1", ...) checked to name `n` classes."""
    if class_names is None:
        class_names = ["background"] + (["foreground"] if n == 2 else [f"class_{i}" for i in range(1, n)])
    if len(class_names) != n:
        raise UserError(f"{len(class_names)} class names given for a model of {n} classes")
    return list(class_names)


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
        self.class_names = checked_class_names(class_names, model.num_classes)
        self.data_loader = data_loader
        self._data = None

    def outputs(self, images):
        size = (self.image_size, self.image_size)
        shape = tf.shape(images)[1:3]
        same = tf.reduce_all(tf.equal(shape, size))
        # Resizing to the same size is not exactly the identity with
        # antialiasing, so images already at the model's size skip it.
        x = tf.cond(same, lambda: images, lambda: resize_uint8(images, self.image_size))
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
