r"""What each int8 export step buys on a trained run: agreement, delta E / IoU, size, latency.

    keras-cnn int8-study --run-dir runs/unet --out int8_unet.json
    keras-cnn int8-study --run-dir runs/weizmann --check-count 62 --out int8_weizmann.json

Builds every file of the study (keras_cnn/benchmarks/int8.py says which),
checks them on the run's held-out images, prints a Markdown table and writes
the rows as JSON (and the table beside it as .md). docs/TFLITE.md quotes it.
"""

import json
import os

from keras_cnn import cli


def parse_args(argv=None, prog=None):
    from keras_cnn.export.colorization import qat

    parser = cli.ArgumentParser(__doc__, prog=prog)
    parser.add_argument("--run-dir", required=True, help="a finished training run folder")
    parser.add_argument("--out", required=True, help="JSON result file (the table goes beside it as .md)")
    parser.add_argument("--check-count", type=cli.at_least(1), default=500,
                        help="held-out images to check on (default: 500)")
    parser.add_argument("--representative-count", type=cli.at_least(1), default=200,
                        help="training images to calibrate on, as export does (default: 200)")
    parser.add_argument("--more-representative", type=cli.at_least(1), default=1000,
                        help="calibration images of the 'more images' row (default: 1000)")
    parser.add_argument("--threads", type=cli.at_least(1), default=1,
                        help="LiteRT threads for the latencies (default: 1)")
    parser.add_argument("--qat-epochs", type=cli.at_least(1), default=None,
                        help="colourizers: instead of the study, fine-tune the model as keras-cnn finetune-int8 "
                             "does for this many epochs (in memory; the run is not changed) and check the "
                             "int8 file after each")
    parser.add_argument("--qat-learning-rate", type=cli.positive_float, default=qat.DEFAULT_LEARNING_RATE,
                        help=f"Adam learning rate of --qat-epochs (default: {qat.DEFAULT_LEARNING_RATE:g})")
    parser.add_argument("--qat-consistency", type=cli.non_negative_float, default=None,
                        help="weight of the int8 simulation's agreement with the float model in --qat-epochs' "
                             f"loss (default: {qat.DEFAULT_CONSISTENCY['argmax']:g} for argmax decoding, "
                             f"{qat.DEFAULT_CONSISTENCY['annealed']:g} for annealed-mean decoding)")
    parser.add_argument("--grey-rounding", action="store_true",
                        help="colourizers: only the diagnosis, the Keras model's agreement with itself when "
                             "its grey input is rounded to coarser steps (seconds)")
    return parser.parse_args(argv)


def run(args):
    from keras_cnn.config import config_path
    from keras_cnn.fileio import check_input, check_output

    # === Checks: before TensorFlow is imported or anything is written ===
    from keras_cnn.hardware import check_threads

    check_threads(args.threads, "--threads")
    check_input(args.run_dir, "--run-dir", "folder")
    check_input(config_path(args.run_dir), "--run-dir", "file")
    check_output(args.out, "--out", "file")

    from keras_cnn.backends import use_tensorflow

    use_tensorflow("int8-study")
    from keras_cnn.benchmarks import int8
    from keras_cnn.benchmarks.report import machine, table
    from keras_cnn.errors import UserError
    from keras_cnn.export import servable_for
    from keras_cnn.fileio import atomic_write_text
    from keras_cnn.tasks import open_run

    servable = servable_for(open_run(args.run_dir))
    if args.qat_epochs:
        result = int8.qat_study(servable, args.qat_epochs, args.qat_learning_rate, args.qat_consistency,
                                args.check_count, args.representative_count)
        atomic_write_text(args.out, json.dumps({**result, "machine": machine()}, indent=2) + "\n")
        print(table(result["rows"], int8.QAT_COLUMNS))
        print(f"wrote {args.out}")
        return
    if args.grey_rounding:
        if servable.application != "colorization":
            raise UserError(f"{args.run_dir}: --grey-rounding is for colourizers, this run is a segmenter")
        rows = int8.grey_rounding(servable, args.check_count)
        atomic_write_text(args.out, json.dumps({"grey_rounding": rows, "machine": machine()}, indent=2) + "\n")
        print(table(rows, [("grey step", "step", ".5f"), ("levels", "levels", None),
                           ("argmax agreement", "argmax_agreement", lambda v: f"{100 * v:.2f}%")]))
        print(f"wrote {args.out}")
        return
    result = int8.study(servable, args.check_count, args.representative_count, args.more_representative,
                        args.threads)
    result.update({"run_dir": os.path.abspath(args.run_dir), "machine": machine()})
    markdown = int8.markdown(result)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    atomic_write_text(os.path.splitext(args.out)[0] + ".md", markdown + "\n")
    print(markdown)
    print(f"wrote {args.out}")


def main(argv=None, prog=None):
    cli.main(lambda: run(parse_args(argv, prog)))


if __name__ == "__main__":
    main()
