r"""Training images/s for each tf.distribute strategy, mixed precision and XLA on/off, side by side.

    keras-cnn benchmark-distribute --repeats 3 --out benchmarks_out/distribute.json
    keras-cnn benchmark-distribute --task segmentation --steps 10 --out benchmarks_out/distribute_seg.json

Every strategy this machine can run (default, one_device, mirrored over all
GPUs, or over two logical CPUs when there is no GPU), each in float32 and
mixed precision (mixed_float16 on GPU, mixed_bfloat16 on CPU) with XLA off and
on, each in a fresh process, reported as a ratio to the default strategy in
float32 without XLA. The colorization task is the course's UNet (NF 32, 24
colours, 32x32, batch 100 per replica); segmentation is DeepLabV3 on the
small_resnet backbone (128x128, batch 16 per replica). Inputs are synthetic
in-memory batches. The table is also written beside the JSON as a .md file.
"""

import json
import os

from keras_cnn import cli


def parse_args(argv=None, prog=None):
    parser = cli.ArgumentParser(__doc__, prog=prog)
    parser.add_argument("--out", required=True, help="JSON result file (the table goes beside it as .md)")
    parser.add_argument("--task", default="colorization", choices=("colorization", "segmentation"))
    parser.add_argument("--steps", type=cli.at_least(1), default=20, help="timed steps per case (after warm-up)")
    parser.add_argument("--warmup", type=cli.at_least(1), default=3,
                        help="untimed steps first (tracing, XLA compile)")
    parser.add_argument("--batch-size", type=cli.at_least(1), default=None, help="per replica (default: 100 / 16)")
    parser.add_argument("--image-size", type=cli.at_least(1), default=None, help="default: 32 / 128")
    parser.add_argument("--repeats", type=cli.at_least(1), default=1,
                        help="rounds over all cases; each row is the median (use 3 on a busy machine)")
    parser.add_argument("--logical-cpus", type=cli.at_least(0), default=2,
                        help="without GPUs, run mirrored over this many logical CPUs (0: skip it)")
    return parser.parse_args(argv)


def run(args):
    from keras_cnn.fileio import check_output

    # === Checks: before any benchmark runs ===
    md_path = os.path.splitext(args.out)[0] + ".md"
    check_output(args.out, "--out", "file")
    check_output(md_path, "--out", "file")

    from keras_cnn.benchmarks import distribute, report
    from keras_cnn.fileio import atomic_write_text

    machine = report.machine()
    print(f"{machine['cpu']}, {machine['usable_cpus']} CPUs, {machine['gpus']} GPU(s), load "
          f"{machine['load_average'][0]:.1f}; TensorFlow {machine['tensorflow']}, Keras {machine['keras']}")
    rows = distribute.run(distribute.available_cases(logical_cpus=args.logical_cpus), args.task,
                          args.batch_size, args.image_size, args.steps, args.warmup, args.repeats)
    table = distribute.markdown(rows)
    atomic_write_text(args.out, json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    atomic_write_text(md_path, table + "\n")
    print(table)
    print(f"wrote {args.out} and {md_path}")


def main(argv=None, prog=None):
    cli.main(lambda: run(parse_args(argv, prog)))


if __name__ == "__main__":
    main()
