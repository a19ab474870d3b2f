r"""Colourize photos or folders of photos with a trained net, writing PNGs.

    keras-cnn colorize --run-dir runs/unet --input photo.jpg --out-dir colorized/
    keras-cnn colorize --model runs/unet/last.keras --input a.jpg b.png photos/ --out-dir colorized/
    keras-cnn colorize --run-dir runs/unet --input ../shared/data/cifar10-horse-train \
        --out-dir colorized/ --decode annealed

Any size, grey or colour (colour photos are turned grey first). Writes
NAME_color.png and NAME_compare.png (grey | colourized | original). A --model
file is read with the run folder it lies in (its config.json and palette.npy).
"""

import os

from keras_cnn import cli


def parse_args(argv=None, prog=None):
    parser = cli.ArgumentParser(__doc__, prog=prog)
    parser.add_argument("--run-dir", help="a finished training run (config.json, best.keras, palette.npy)")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best",
                        help="best.keras or last.keras of --run-dir (default: best)")
    parser.add_argument("--model", metavar="FILE",
                        help="a .keras colourizer in its run folder (instead of --run-dir and --checkpoint)")
    parser.add_argument("--input", required=True, nargs="+", metavar="PATH",
                        help="image files and/or folders of images")
    parser.add_argument("--out-dir", required=True, help="folder for the PNGs")
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
    from keras_cnn.errors import UserError
    from keras_cnn.fileio import check_input, check_output, list_images, output_paths

    # === Checks: before TensorFlow is imported or anything is written ===
    if args.model:
        check_input(args.model, "--model", "file")
        run_dir = os.path.dirname(args.model) or "."
        if args.run_dir and os.path.abspath(args.run_dir) != os.path.abspath(run_dir):
            raise UserError(f"--model {args.model} is read with its own run folder {run_dir}; drop --run-dir")
    elif args.run_dir:
        run_dir = args.run_dir
    else:
        raise UserError("pass --run-dir (a training run) or --model (a .keras file in its run folder)")
    load_run_config(ColorizationConfig, run_dir)
    for path in args.input:
        check_input(path, "--input", "file or folder")
    check_output(args.out_dir, "--out-dir", "folder")
    model_path = args.model or os.path.join(run_dir, f"{args.checkpoint}.keras")
    check_input(model_path, "--model" if args.model else f"--checkpoint {args.checkpoint}", "file")
    # Every output is planned first: none replaces an input, a run's file or anything but a regular
    # file, and no two photos write the same name (NAME_color.png, NAME_compare.png).
    photos = [photo for path in args.input
              for photo in (list_images(path) if os.path.isdir(path) else [path])]  # as colorize_files reads them
    output_paths(photos, args.out_dir, ("color",) if args.no_compare else ("color", "compare"))

    from keras_cnn.colorization.predict import colorize_files
    from keras_cnn.tasks import open_run
    from keras_cnn.training import load_model

    run = open_run(run_dir)
    cfg = run.config
    model = run.task.adapt_model(load_model(model_path), run)
    written = []
    for path in args.input:
        written += colorize_files(model, run.assets["palette"], path, args.out_dir, args.batch_size,
                                  args.decode or cfg.decode,
                                  cfg.temperature if args.temperature is None else args.temperature,
                                  compare=not args.no_compare)
    print(f"wrote {len(written)} PNG(s) to {args.out_dir} ({len(photos)} photo(s))")


def main(argv=None, prog=None):
    cli.main(lambda: run(parse_args(argv, prog)))


if __name__ == "__main__":
    main()
