r"""What each int8 export step buys, on a trained run: agreement, delta E / IoU, size, latency.

    python scripts/int8_study.py --run-dir runs/unet --out int8_unet.json
    python scripts/int8_study.py --run-dir runs/weizmann --check-count 62 --out int8_weizmann.json

Builds every file of the study (keras_cnn/benchmarks/int8.py says which),
checks them on the run's held-out images, prints a Markdown table and writes
the rows as JSON (and the table beside it as .md). docs/TFLITE.md quotes it.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_cnn import cli  # noqa: E402


def run():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True, help="a finished training run folder")
    parser.add_argument("--out", required=True, help="JSON result file (the table goes beside it as .md)")
    parser.add_argument("--check-count", type=int, default=500, help="held-out images to check on (default: 500)")
    parser.add_argument("--representative-count", type=int, default=200,
                        help="training images to calibrate on, as export does (default: 200)")
    parser.add_argument("--more-representative", type=int, default=1000,
                        help="calibration images of the 'more images' row (default: 1000)")
    parser.add_argument("--threads", type=int, default=1, help="LiteRT threads for the latencies (default: 1)")
    parser.add_argument("--grey-rounding", action="store_true",
                        help="colourizers: only the diagnosis, the Keras model's agreement with itself when "
                             "its grey input is rounded to coarser steps (seconds)")
    args = parser.parse_args()

    from keras_cnn.benchmarks import int8
    from keras_cnn.benchmarks.report import machine
    from keras_cnn.fileio import atomic_write_text
    from keras_cnn.tasks import open_run

    servable = open_run(args.run_dir).servable()
    if args.grey_rounding:
        from keras_cnn.benchmarks.report import table
        from keras_cnn.errors import UserError

        if servable.application != "colorization":
            raise UserError("--grey-rounding is for colourizers")
        rows = int8.grey_rounding(servable, args.check_count)
        atomic_write_text(args.out, json.dumps({"grey_rounding": rows, "machine": machine()}, indent=2) + "\n")
        print(table(rows, [("grey step", "step", ".5f"), ("levels", "levels", None),
                           ("argmax agreement", "argmax_agreement", lambda v: f"{100 * v:.2f}%")]))
        print(f"wrote {args.out}")
        return
    result = int8.study(servable, args.check_count, args.representative_count, args.more_representative,
                        args.threads)
    result.update({"run_dir": os.path.abspath(args.run_dir), "machine": machine()})
    table = int8.markdown(result)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    atomic_write_text(os.path.splitext(args.out)[0] + ".md", table + "\n")
    print(table)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    cli.quiet_tensorflow()
    cli.main(run)
