"""The segmentation run as export sees it: `from_run` (its `SegmenterServable`) and `preset_extras`.

`from_run` makes a run's `SegmenterServable`; `preset_extras` says what its
preset folder holds beside the weights (input size, class names).
"""

from keras_cnn.errors import UserError


def from_run(run, checkpoint="best", image_size=None, images_dir=None, class_names=None, flip_tta=False):
    """The `SegmenterServable` of a segmentation `Run`, at the model's own input size."""
    from keras_cnn.export.segmentation.servable import SegmenterServable
    from keras_cnn.export.servable import run_source

    model = run.load_model(checkpoint)
    if image_size and image_size != model.image_size[0]:
        raise UserError(f"a segmenter exports at its own input size {model.image_size[0]}, "
                        f"not --image-size {image_size}")
    # Only the photos are needed for calibration and checks; skip checking every mask.
    servable = SegmenterServable(model, run.config, class_names, run_source(run, checkpoint), images_dir,
                                 data_loader=lambda: run.task.load_data(run.config, splits=()), flip_tta=flip_tta)
    servable.run_dir = run.run_dir
    return servable


def preset_extras(run, model, class_names=None):
    """A segmenter preset's metadata beside the weights (input, class names) and its asset files (none)."""
    from keras_cnn.export.segmentation.servable import checked_class_names

    return ({"input": {"size": list(model.image_size), "preprocessing": model.preprocessing},
             "class_names": checked_class_names(class_names, model.num_classes)}, {})
