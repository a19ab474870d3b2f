"""Which export adapter serves a run: one module per application, chosen by the run's task name.

Export sits on top of the applications: it imports them, they never import
it. A third application adds one line here and a module with `from_run` and
`preset_extras`.
"""

import importlib

from keras_cnn.errors import UserError

# Task name -> adapter module (imported on first use, so exporting one application never imports the other).
ADAPTERS = {
    "colorization": "keras_cnn.export.colorization.adapter",
    "segmentation": "keras_cnn.export.segmentation.adapter",
}


def adapter_for(run):
    """The export adapter module of a `Run`'s application."""
    name = run.task.name
    if name not in ADAPTERS:
        raise UserError(f"{run.run_dir}: no export for {name} runs; exportable: {', '.join(ADAPTERS)}")
    return importlib.import_module(ADAPTERS[name])


def servable_for(run, checkpoint="best", **options):
    """The `Servable` of a `Run` (`keras_cnn.open_run(run_dir)`): its model with export's pre/post-processing.

    `options` are the adapter's: `image_size` and `images_dir` for both,
    `class_names` and `flip_tta` for a segmenter.
    """
    return adapter_for(run).from_run(run, checkpoint, **options)
