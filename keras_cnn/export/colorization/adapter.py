"""The colourization run as export sees it: `from_run` (its `ColorizerServable`) and `preset_extras`.

`from_run` makes a run's `ColorizerServable` (its model, palette and
decoding); `preset_extras` says what its preset folder holds beside the
weights (input mode, decoding, the palette file).
"""

import os

from keras_cnn.errors import UserError


def from_run(run, checkpoint="best", image_size=None, images_dir=None, class_names=None):
    """The `ColorizerServable` of a colourization `Run` (export size 32 unless `image_size`)."""
    from keras_cnn import state_files
    from keras_cnn.export.colorization import qat
    from keras_cnn.export.colorization.servable import ColorizerServable
    from keras_cnn.export.servable import folder_name, run_source

    if class_names:
        raise UserError("class names are for segmenters; a colourizer's classes are its palette colours")
    source = run_source(run, checkpoint)
    record = run.path(qat.RECORD_FILE)
    if os.path.isfile(record):  # a finetune-int8 run: the metadata says what it came from
        data = state_files.read_object(record, "int8 fine-tuning record",
                                       remedy="delete it to export without that record")
        summary = {k: data.get(k) for k in qat.RECORD_SUMMARY}
        if isinstance(summary.get("source_run"), str):
            summary["source_run"] = folder_name(summary["source_run"])
        source["int8_finetune"] = summary
    servable = ColorizerServable(run.load_model(checkpoint), run.assets["palette"], run.config,
                                 image_size or 32, source, images_dir,
                                 data_loader=lambda: run.task.load_data(run.config))
    servable.run_dir = run.run_dir
    return servable


def preset_extras(run, model, class_names=None):
    """A colourizer preset's metadata beside the weights (input, decoding) and its asset files (the palette)."""
    from keras_cnn.colorization.palette import save_palette

    if class_names:
        raise UserError("class names are for segmenters; a colourizer's classes are its palette colours")
    palette = run.assets["palette"]
    if len(palette) != model.num_colours:
        raise UserError(f"{run.path('palette.npy')}: {len(palette)} colours, but the model predicts "
                        f"{model.num_colours}")
    metadata = {"input": {"size": None, "mode": model.input_mode},
                "decoding": {"decode": run.config.decode, "temperature": run.config.temperature},
                "palette": {"file": "assets/palette.npy", "space": palette.space, "colours": len(palette)}}
    return metadata, {"palette.npy": lambda path: save_palette(path, palette)}
