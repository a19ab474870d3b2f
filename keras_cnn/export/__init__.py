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

Modules: `servable` (a trained model plus its in-graph pre/post-processing),
`saved_model`, `tflite`, `layout` (versions, models.config, `export_model`),
`clients` (REST and gRPC), `litert_runtime` (TF-free on-device inference),
`int8_graph` (the colourizer graph int8 keeps exact, and its int8 simulation),
`qat` (quantisation-aware fine-tuning through that simulation).
"""
