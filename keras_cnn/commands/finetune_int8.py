r"""Fine-tune a trained colourizer so that its int8 TFLite file decides as it does; writes a new run.

    keras-cnn finetune-int8 --run-dir runs/unet --out-dir runs/unet_int8
    keras-cnn export --run-dir runs/unet_int8 --name unet --check-count 500

Post-training int8 leaves a trained colourizer's file at 88-94% argmax
agreement with its Keras model; this trains the model for a few epochs through
a simulation of its int8 file (keras_cnn/export/qat.py), so that the Keras
model, its SavedModel and every TFLite file exported from the new run carry
the same weights and the int8 file keeps about 97-98% of the decisions. The
source run is not changed. The new run folder holds the run's config.json,
palette.npy and history.csv (so --resume on it refuses: the run is finished),
the fine-tuned model as best.keras and last.keras, and int8_finetune.json (the
source, the settings, and before / after figures on the held-out images: the
Keras model's mean delta E and the simulated int8 agreement; export measures
the real files). Export the new run with the same --representative-count (the
images both calibrate on).
"""

import os

from keras_cnn import cli


def parse_args(argv=None, prog=None):
    from keras_cnn.export.colorization import qat

    parser = cli.ArgumentParser(__doc__, prog=prog)
    parser.add_argument("--run-dir", required=True, help="a finished colourizer training run")
    parser.add_argument("--out-dir", required=True, help="the new run folder (must not exist)")
    parser.add_argument("--data-dir", default=None,
                        help="the run's image folder, if it moved since training (folder runs; the new run "
                             "records it)")
    parser.add_argument("--checkpoint", default="best", choices=("best", "last"),
                        help="best.keras or last.keras of the run (default: best)")
    parser.add_argument("--epochs", type=cli.at_least(1), default=qat.DEFAULT_EPOCHS,
                        help=f"passes over the training images (default: {qat.DEFAULT_EPOCHS})")
    parser.add_argument("--learning-rate", type=cli.positive_float, default=qat.DEFAULT_LEARNING_RATE,
                        help=f"Adam learning rate (default: {qat.DEFAULT_LEARNING_RATE:g})")
    parser.add_argument("--consistency", type=cli.non_negative_float, default=None,
                        help="weight of the int8 simulation's agreement with the float model in the loss; "
                             "higher keeps more decisions and moves the colours more "
                             f"(default: {qat.DEFAULT_CONSISTENCY['argmax']:g} for argmax decoding, "
                             f"{qat.DEFAULT_CONSISTENCY['annealed']:g} for annealed-mean decoding)")
    parser.add_argument("--representative-count", type=cli.at_least(1), default=200,
                        help="training images the int8 ranges are calibrated on; use export's value "
                             "(default: 200, export's default)")
    parser.add_argument("--check-count", type=cli.at_least(1), default=500,
                        help="held-out images for the before / after figures (default: 500)")
    return parser.parse_args(argv)


def run(args):
    from keras_cnn.colorization.config import ColorizationConfig
    from keras_cnn.config import check_input_paths, config_path, load_run_config, read_task_name
    from keras_cnn.errors import UserError
    from keras_cnn.fileio import check_input, check_output

    # === Checks: before TensorFlow is imported or anything is written ===
    check_input(args.run_dir, "--run-dir", "folder")
    check_input(config_path(args.run_dir), "--run-dir", "file")
    task = read_task_name(args.run_dir)
    if task != "colorization":
        raise UserError(f"--run-dir {args.run_dir}: a {task} run; int8 fine-tuning is for colourizers "
                        "(a segmenter's int8 file keeps its decisions as exported)")
    overrides = {"data_dir": os.path.abspath(args.data_dir)} if args.data_dir else None
    check_input_paths(load_run_config(ColorizationConfig, args.run_dir, overrides))
    check_input(os.path.join(args.run_dir, f"{args.checkpoint}.keras"), f"--checkpoint {args.checkpoint}", "file")
    check_output(args.out_dir, "--out-dir", "folder")
    if os.path.lexists(args.out_dir):
        raise UserError(f"--out-dir {args.out_dir}: already exists; the fine-tuned run goes into a new folder")

    from keras_cnn.backends import use_tensorflow

    use_tensorflow("finetune-int8")
    from keras_cnn.benchmarks.report import table
    from keras_cnn.export import servable_for
    from keras_cnn.export.colorization import qat
    from keras_cnn.tasks import open_run

    servable = servable_for(open_run(args.run_dir, overrides), args.checkpoint)
    result = qat.finetune_run(servable, args.run_dir, args.out_dir, args.epochs, args.learning_rate,
                              args.consistency, args.representative_count, args.check_count)
    print(table(result["figures"], qat.FIGURE_COLUMNS))
    print(f"wrote {args.out_dir}")


def main(argv=None, prog=None):
    cli.main(lambda: run(parse_args(argv, prog)))


if __name__ == "__main__":
    main()
