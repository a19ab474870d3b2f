"""Export for serving and phones: SavedModel (TF Serving), TFLite (LiteRT), clients.

Layout of an export root (default `exported_models/`):

    models.config                  TF Serving --model_config_file, every model below
    <name>/<version>/              a SavedModel, the folder TF Serving loads
        saved_model.pb, variables/
        assets.extra/metadata.json palette / class names, input size, signatures
    <name>/tflite/<version>/       TFLite files (TF Serving ignores non-numeric folders)
        metadata.json              the same metadata, beside the .tflite files
        <name>_<variant>.tflite    variant: float32, float16, dynamic, int8
        <name>_<variant>_report.json   size, op list, agreement with Keras

and, with `--preset-dir DIR`, a preset folder instead (`preset`: the model's
config.json, model.weights.h5, metadata.json, assets/) that the
applications' `from_preset` load trained.

A generic core, application-neutral: `servable` (the `Servable` base: a
trained model plus its in-graph pre/post-processing), `saved_model`,
`tflite`, `layout` (versions, models.config, `export_model`), `clients`
(REST and gRPC), `litert_runtime` (TF-free on-device inference), `preset`
(preset folders). On top of
it one adapter per application, chosen by `registry` from the run's task
name: `colorization` (`ColorizerServable`; `int8_graph`, the colourizer graph
int8 keeps exact, and its simulation; `qat`, quantisation-aware fine-tuning
through it) and `segmentation` (`SegmenterServable`).

    servable = keras_cnn.export.servable_for(keras_cnn.open_run("runs/unet"))

The applications, `keras_cnn.tasks` and `keras_cnn.training` never import
this package. A run trained under any Keras backend exports here, in a
TensorFlow process.
"""

from keras_cnn.export.registry import servable_for  # noqa: F401
