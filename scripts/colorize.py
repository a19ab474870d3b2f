r"""Colourize a photo or a folder of photos with a trained net, writing PNGs.

    python scripts/colorize.py --run-dir runs/unet --input photo.jpg --out-dir colorized/
    python scripts/colorize.py --run-dir runs/unet --input ../shared/data/cifar10-horse-train \
        --out-dir colorized/ --decode annealed

Any size, grey or colour (colour photos are turned grey first). Writes
NAME_color.png and NAME_compare.png (grey | colourized | original).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_cnn import cli  # noqa: E402
from keras_cnn.errors import UserError  # noqa: E402


def run():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True, help="a finished training run (best.keras, palette.npy)")
    parser.add_argument("--input", required=True, help="an image file or a folder of images")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--decode", choices=("argmax", "annealed"), default=None,
                        help="default: the run's own setting")
    parser.add_argument("--temperature", type=float, default=None, help="annealed-mean T (default: the run's)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--no-compare", action="store_true", help="skip the side-by-side PNGs")
    args = parser.parse_args()

    from keras_cnn.colorization.predict import colorize_files
    from keras_cnn.tasks import open_run

    run = open_run(args.run_dir)
    if run.task.name != "colorization":
        raise UserError(f"{args.run_dir}: a {run.task.name} run, not a colourization run")
    cfg = run.config
    written = colorize_files(run.model, run.assets["palette"], args.input, args.out_dir, args.batch_size,
                             args.decode or cfg.decode,
                             cfg.temperature if args.temperature is None else args.temperature,
                             compare=not args.no_compare)
    print(f"wrote {len(written)} PNG(s) to {args.out_dir}")


if __name__ == "__main__":
    cli.quiet_tensorflow()
    cli.main(run)
