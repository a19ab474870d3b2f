r"""Colourize a photo or a folder of photos with a trained net, writing PNGs.

    python scripts/colorize.py --run-dir runs/unet --input photo.jpg --out-dir colorized/
    python scripts/colorize.py --run-dir runs/unet --input ../shared/data/cifar10-horse-train \
        --out-dir colorized/ --decode annealed

(`keras-cnn colorize ...` is the same command.) Any size, grey or colour
(colour photos are turned grey first). Writes NAME_color.png and
NAME_compare.png (grey | colourized | original).
"""

import os

from keras_cnn import cli


def parse_args(argv=None, prog=None):
    parser = cli.ArgumentParser(__doc__, prog=prog)
    parser.add_argument("--run-dir", required=True, help="a finished training run (best.keras, palette.npy)")
    parser.add_argument("--input", required=True, help="an image file or a folder of images")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--decode", choices=("argmax", "annealed"), default=None,
                        help="default: the run's own setting")
    parser.add_argument("--temperature", type=cli.positive_float, default=None,
                        help="annealed-mean T (default: the run's)")
    parser.add_argument("--batch-size", type=cli.at_least(1), default=16)
    parser.add_argument("--no-compare", action="store_true", help="skip the side-by-side PNGs")
    return parser.parse_args(argv)


def run(args):
    from keras_cnn.colorization.config import ColorizationConfig
    from keras_cnn.config import load_run_config
    from keras_cnn.fileio import check_input, check_output, list_images, output_paths

    # === Checks: before TensorFlow is imported or anything is written ===
    load_run_config(ColorizationConfig, args.run_dir)
    check_input(args.input, "--input", "file or folder")
    check_output(args.out_dir, "--out-dir", "folder")
    # Every output is planned first: none replaces an input, a run's file or anything but a regular
    # file, and no two photos write the same name (NAME_color.png, NAME_compare.png).
    photos = list_images(args.input) if os.path.isdir(args.input) else [args.input]  # as colorize_files reads it
    output_paths(photos, args.out_dir, ("color",) if args.no_compare else ("color", "compare"))

    from keras_cnn.colorization.predict import colorize_files
    from keras_cnn.tasks import open_run

    run = open_run(args.run_dir)
    cfg = run.config
    written = colorize_files(run.model, run.assets["palette"], args.input, args.out_dir, args.batch_size,
                             args.decode or cfg.decode,
                             cfg.temperature if args.temperature is None else args.temperature,
                             compare=not args.no_compare)
    print(f"wrote {len(written)} PNG(s) to {args.out_dir} ({len(photos)} photo(s))")


def main(argv=None, prog=None):
    cli.main(lambda: run(parse_args(argv, prog)))


if __name__ == "__main__":
    main()
