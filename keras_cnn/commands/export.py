r"""Export a trained run (colourizer or segmenter) for TF Serving and for phones.

    keras-cnn export --run-dir runs/unet --name unet \
        --formats saved_model,tflite_float32,tflite_float16,tflite_dynamic,tflite_int8

Writes exported_models/<name>/<version>/ (a SavedModel: signatures
serving_default on uint8 "images" and serving_bytes on encoded "image_bytes"),
exported_models/<name>/tflite/<version>/ (the .tflite files, their reports and
metadata.json) and exported_models/models.config (every served model). The
version is the next free integer unless --version is given; an existing
version is never overwritten. int8 calibration and the agreement checks use
the run's own training / validation images, or --images DIR.

Each TFLite file is checked on the held-out images and one line per file
says: size and one-thread LiteRT latency against float32, argmax agreement
and mean logit difference with the Keras model, and the task metric of the
file beside the Keras model's (mean delta E of the colours for a colourizer,
foreground IoU against the run's masks for a segmenter); "ok" or "MISSED"
marks each target of docs/TFLITE.md. The latency target is judged only on a
CPU with int8 dot-product instructions (AVX512-VNNI, AVX-VNNI, AMX, ARM dot
product), where int8 can beat float32; elsewhere one line says why it was
not. The same goes into <name>_<variant>_report.json.

With --preset-dir DIR it writes the run as a preset folder instead (the
model's config.json, model.weights.h5, metadata.json and the palette or class
names; nothing else), which Colorizer.from_preset(DIR) /
DeepLabV3Segmenter.from_preset(DIR) load trained:

    keras-cnn export --run-dir runs/unet --preset-dir presets/unet
"""

import os

from keras_cnn import cli

# The largest fixed TFLite input of a colourizer. The file runs a photo of any size in tiles of its
# input size, so a bigger input buys nothing, and int8 calibration of a 2048 x 2048 input already holds
# hundreds of MB of activations per image; 100,000 would ask for terabytes.
MAX_IMAGE_SIZE = 2048


def parse_args(argv=None, prog=None):
    from keras_cnn.export.layout import DEFAULT_SERVING_BASE, FORMATS

    parser = cli.ArgumentParser(__doc__, prog=prog)
    parser.add_argument("--run-dir", required=True, help="a finished training run folder")
    parser.add_argument("--name", default=None,
                        help="model name (folder and TF Serving name; default: the run folder's name)")
    parser.add_argument("--formats", default=",".join(FORMATS),
                        help=f"comma-separated, from: {', '.join(FORMATS)}; or all (default: all)")
    parser.add_argument("--out", default="exported_models", help="export root (default: exported_models)")
    parser.add_argument("--version", type=cli.at_least(1), default=None,
                        help="version number (default: the next free one)")
    parser.add_argument("--checkpoint", default="best", choices=("best", "last"),
                        help="best.keras or last.keras of the run (default: best)")
    parser.add_argument("--image-size", type=cli.at_least(1), default=None,
                        help="fixed TFLite input size of a colourizer (default 32; segmenters use their own)")
    parser.add_argument("--images", default=None, metavar="DIR",
                        help="a folder of image files for int8 calibration and the checks, instead of the "
                             "run's own data")
    parser.add_argument("--class-names", default=None,
                        help="segmenter: comma-separated class names (default: background,foreground)")
    parser.add_argument("--flip-tta", action="store_true",
                        help="segmenter: left-right flip test-time augmentation in the exported graphs "
                             "(two passes per image; metadata.json says flip_tta: true)")
    parser.add_argument("--representative-count", type=cli.at_least(1), default=200,
                        help="training images used to calibrate int8 (default: 200)")
    parser.add_argument("--check-count", type=cli.at_least(1), default=32,
                        help="validation images the exports are checked on (default: 32)")
    parser.add_argument("--preset-dir", default=None, metavar="DIR",
                        help="write the run as a preset folder DIR (config, weights, metadata, palette or class "
                             "names) for from_preset, instead of the SavedModel and TFLite files; DIR must "
                             "not exist")
    parser.add_argument("--serving-base", default=DEFAULT_SERVING_BASE,
                        help=f"where the server sees the export root, for models.config "
                             f"(default: {DEFAULT_SERVING_BASE})")
    return parser.parse_args(argv)


def run(args):
    from keras_cnn.backends import use_tensorflow
    from keras_cnn.config import config_path, read_task_name
    from keras_cnn.errors import UserError
    from keras_cnn.export.layout import check_version_free, export_model, parse_formats
    from keras_cnn.fileio import check_input, check_output

    # === Checks: before TensorFlow is imported or anything is written ===
    check_input(args.run_dir, "--run-dir", "folder")
    check_input(config_path(args.run_dir), "--run-dir", "file")
    check_input(os.path.join(args.run_dir, f"{args.checkpoint}.keras"), f"--checkpoint {args.checkpoint}", "file")
    if args.preset_dir:
        return write_preset_folder(args)
    if args.images:
        check_input(args.images, "--images", "folder")
    check_output(args.out, "--out", "folder")
    if args.image_size is not None and args.image_size > MAX_IMAGE_SIZE:
        raise UserError(f"--image-size {args.image_size}: more than the {MAX_IMAGE_SIZE} a TFLite input may be "
                        "(the file runs photos of any size in tiles of its input size, so a bigger one buys "
                        "nothing); the default is 32")
    options = {}
    if args.flip_tta:
        if read_task_name(args.run_dir) != "segmentation":
            raise UserError(f"{args.run_dir}: --flip-tta is for segmenters; this is a "
                            f"{read_task_name(args.run_dir)} run")
        options["flip_tta"] = True
    name = args.name or os.path.basename(os.path.normpath(args.run_dir))
    formats = parse_formats(args.formats)
    # A taken version or a bad name fails in a second, not after loading the model.
    check_version_free(args.out, name, formats, args.version)

    use_tensorflow("export")
    from keras_cnn.export import servable_for
    from keras_cnn.tasks import open_run

    class_names = [c.strip() for c in args.class_names.split(",")] if args.class_names else None
    servable = servable_for(open_run(args.run_dir), args.checkpoint, image_size=args.image_size,
                            images_dir=args.images, class_names=class_names, **options)
    summary = export_model(servable, args.out, name, formats, args.version, args.representative_count,
                           args.check_count, args.serving_base)
    for key in ("saved_model", "tflite"):
        if key in summary:
            print(f"wrote {summary[key]['path']}")
    if "models_config" in summary:
        print(f"wrote {summary['models_config']}")


# Flags of the SavedModel / TFLite export that a preset folder has no use for, and their defaults.
_NOT_FOR_PRESETS = ("--name", "--formats", "--out", "--version", "--image-size", "--images", "--flip-tta",
                    "--representative-count", "--check-count", "--serving-base")


def write_preset_folder(args):
    """--preset-dir: the run as a preset folder, checked before TensorFlow is imported."""
    from keras_cnn.backends import use_tensorflow
    from keras_cnn.errors import UserError
    from keras_cnn.fileio import check_output

    defaults = vars(parse_args(["--run-dir", args.run_dir]))
    given = [flag for flag in _NOT_FOR_PRESETS if getattr(args, flag[2:].replace("-", "_")) !=
             defaults[flag[2:].replace("-", "_")]]
    if given:
        raise UserError(f"--preset-dir writes a preset folder only; {', '.join(given)} "
                        f"{'is' if len(given) == 1 else 'are'} for the SavedModel and TFLite export")
    check_output(args.preset_dir, "--preset-dir", "folder")
    if os.path.lexists(args.preset_dir):
        raise UserError(f"--preset-dir {args.preset_dir}: already exists; not replacing it (choose a new folder)")

    use_tensorflow("export")
    from keras_cnn.export.preset import write_preset
    from keras_cnn.tasks import open_run

    class_names = [c.strip() for c in args.class_names.split(",")] if args.class_names else None
    write_preset(open_run(args.run_dir), args.preset_dir, args.checkpoint, class_names)
    print(f"wrote {args.preset_dir}")


def main(argv=None, prog=None):
    cli.main(lambda: run(parse_args(argv, prog)))


if __name__ == "__main__":
    main()
