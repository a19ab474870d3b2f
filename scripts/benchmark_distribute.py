r"""Training images/s for each tf.distribute strategy, mixed precision and XLA on/off, side by side.

    python scripts/benchmark_distribute.py --repeats 3 --out benchmarks_out/distribute.json
    python scripts/benchmark_distribute.py --task segmentation --steps 10 --out benchmarks_out/distribute_seg.json

Every strategy this machine can run (default, one_device, mirrored over all GPUs, or over
two logical CPUs when there is no GPU), each in float32 and mixed precision (mixed_float16
on GPU, mixed_bfloat16 on CPU) with XLA off and on, each in a fresh process, reported as a
ratio to the default strategy in float32 without XLA. The colorization task is the course's
UNet (NF 32, 24 colours, 32x32, batch 100 per replica); segmentation is DeepLabV3 on the
small_resnet backbone (128x128, batch 16 per replica). Inputs are synthetic in-memory
batches. The table is also written beside the JSON as a .md file.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_cnn import cli  # noqa: E402


def run():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="JSON result file (the table goes beside it as .md)")
    parser.add_argument("--task", default="colorization", choices=("colorization", "segmentation"))
    parser.add_argument("--steps", type=int, default=20, help="timed steps per case (after warm-up)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (tracing, XLA compile)")
    parser.add_argument("--batch-size", type=int, default=None, help="per replica (default: 100 / 16)")
    parser.add_argument("--image-size", type=int, default=None, help="default: 32 / 128")
    parser.add_argument("--repeats", type=int, default=1,
                        help="rounds over all cases; each row is the median (use 3 on a busy machine)")
    parser.add_argument("--logical-cpus", type=int, default=2,
                        help="without GPUs, run mirrored over this many logical CPUs (0: skip it)")
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 1 or args.repeats < 1:
        from keras_cnn.errors import UserError

        raise UserError("--steps, --warmup and --repeats must be at least 1")

    from keras_cnn.benchmarks import distribute, report
    from keras_cnn.fileio import atomic_write_text

    machine = report.machine()
    print(f"{machine['cpu']}, {machine['usable_cpus']} CPUs, {machine['gpus']} GPU(s), load "
          f"{machine['load_average'][0]:.1f}; TensorFlow {machine['tensorflow']}, Keras {machine['keras']}")
    rows = distribute.run(distribute.available_cases(logical_cpus=args.logical_cpus), args.task,
                          args.batch_size, args.image_size, args.steps, args.warmup, args.repeats)
    table = distribute.markdown(rows)
    atomic_write_text(args.out, json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    md_path = os.path.splitext(args.out)[0] + ".md"
    atomic_write_text(md_path, table + "\n")
    print(table)
    print(f"wrote {args.out} and {md_path}")


if __name__ == "__main__":
    cli.quiet_tensorflow()
    cli.main(run)
