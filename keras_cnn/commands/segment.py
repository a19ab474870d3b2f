r"""Segment photos or folders of photos with a trained segmenter.

    keras-cnn segment --run-dir runs/weizmann --input photo.jpg --out-dir masks/
    keras-cnn segment --model runs/weizmann/last.keras \
        --input a.jpg ../shared/data/weizmann-horses/images --out-dir masks/

Any size: the photo is resized to the model's input and the prediction back to
the photo's size. Writes NAME_mask.png (0/255 for a two-class model, the class
index otherwise) and NAME_overlay.png (the photo with the object tinted).
"""

import os

from keras_cnn import cli

# NAME_mask.png and NAME_overlay.png (`segmentation.predict.segment_paths`).
SUFFIXES = ("mask", "overlay")


def parse_args(argv=None, prog=None):
    parser = cli.ArgumentParser(__doc__, prog=prog)
    parser.add_argument("--run-dir", help="a finished training run (config.json, best.keras)")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best",
                        help="best.keras or last.keras of --run-dir (default: best)")
    parser.add_argument("--model", metavar="FILE", help="a .keras segmenter (instead of --run-dir and --checkpoint)")
    parser.add_argument("--input", required=True, nargs="+", metavar="PATH",
                        help="image files and/or folders of images")
    parser.add_argument("--out-dir", required=True, help="folder for the PNGs")
    parser.add_argument("--flip-tta", action="store_true",
                        help="test-time augmentation: average the logits of each photo and of its mirror "
                             "image (two passes per photo)")
    return parser.parse_args(argv)


def run(args):
    from keras_cnn.errors import UserError
    from keras_cnn.fileio import check_input, check_output, image_inputs, output_paths

    # === Checks: before TensorFlow is imported or anything is written ===
    if not (args.model or args.run_dir):
        raise UserError("pass --model (a .keras file) or --run-dir (a training run)")
    if args.model:
        check_input(args.model, "--model", "file")
    else:
        check_input(args.run_dir, "--run-dir", "folder")
        check_input(os.path.join(args.run_dir, f"{args.checkpoint}.keras"), f"--checkpoint {args.checkpoint}", "file")
    for path in args.input:
        check_input(path, "--input", "file or folder")
    check_output(args.out_dir, "--out-dir", "folder")
    # Every output is planned before the model loads: none replaces an input, a run's file or anything
    # but a regular file, and no two photos write the same name.
    photos = image_inputs(args.input)
    output_paths(photos, args.out_dir, SUFFIXES)

    from keras_cnn.segmentation.deeplab_v3 import DeepLabV3Segmenter, flip_averaged
    from keras_cnn.segmentation.predict import segment_paths
    from keras_cnn.training import load_model

    path = args.model or os.path.join(args.run_dir, f"{args.checkpoint}.keras")
    model = load_model(path)
    if not isinstance(model, DeepLabV3Segmenter):
        raise UserError(f"{path}: not a segmenter of this project (it is a {type(model).__name__})")
    if args.flip_tta:
        model = flip_averaged(model)
    written = segment_paths(model, photos, args.out_dir)
    print(f"wrote {len(written)} PNG(s) to {args.out_dir} ({len(photos)} photo(s))")


def main(argv=None, prog=None):
    cli.main(lambda: run(parse_args(argv, prog)))


if __name__ == "__main__":
    main()
