r"""Run an exported .tflite on photos of any size as a phone app would (LiteRT + NumPy, no TensorFlow).

    keras-cnn tflite-predict --model exported_models/unet/tflite/1/unet_int8.tflite \
        --input ../shared/data/weizmann-horses/images/horse001.jpg --out-dir tflite_out

Writes NAME_color.png (a colourizer) or NAME_mask.png (a segmenter) into
--out-dir for each photo, at the photo's own size, as `colorize` and `segment`
write them. A colourizer's file has a fixed input (32x32 unless exported with
--image-size), so the photo goes through it in tiles of that size, each with a
border of real photo around it as wide as the net looks (metadata.json beside
the model says how far), and the borders are dropped: the colours PNG equals
`colorize`'s up to int8 rounding. A segmenter sees the photo resized to its
input size, and its logits are resized back to the photo before the argmax;
the mask is written as class index scaled to 0..255. An annealed-mean
colourizer's colours are decoded from its "logits" with the palette in the
metadata.
"""

import argparse
import os
import sys

from keras_cnn import cli, vocabulary


def parse_args(argv=None, prog=None):
    parser = cli.ArgumentParser(__doc__, prog=prog)
    parser.add_argument("--model", required=True, metavar="FILE", help="a .tflite file written by keras-cnn export")
    vocabulary.add_alias(parser, "--image", parser.add_argument(
        "--input", required=True, nargs="+", metavar="PATH",
        help="photos (JPEG, PNG, ...) and/or folders of photos"))
    parser.add_argument("--out-dir", default=None, metavar="DIR", help="folder for the result PNGs")
    # The old spelling: one photo's result PNG.
    parser.add_argument("--out", action=vocabulary.deprecated_action(argparse._StoreAction, "--out-dir"),
                        default=None, help=argparse.SUPPRESS)
    parser.add_argument("--metadata", default=None, help="metadata.json (default: the one beside --model)")
    parser.add_argument("--threads", type=cli.at_least(1), default=None,
                        help="interpreter threads (default: LiteRT's)")
    args = parser.parse_args(argv)
    if (args.out is None) == (args.out_dir is None):
        parser.error("pass --out-dir DIR" if args.out is None else "--out and --out-dir: pass one (--out-dir)")
    if args.out is not None and len(args.input) > 1:
        parser.error("--out names one result file; pass --out-dir for several photos")
    return args


def run(args):
    from keras_cnn.fileio import check_input, check_output, output_paths
    from keras_cnn.hardware import check_threads

    # === Checks: before anything is loaded or written ===
    check_threads(args.threads, "--threads")
    check_input(args.model, "--model", "file")  # (rt.read_photo reads and checks each photo)
    metadata = args.metadata or os.path.join(os.path.dirname(os.path.abspath(args.model)), "metadata.json")
    check_input(metadata, "--metadata", "file")
    for path in args.input:
        check_input(path, "--input", "file or folder")
    photos = _photos(args.input)
    if args.out is not None:
        check_output(args.out, "--out", "file", inputs=(args.model, metadata, *photos))
    else:
        check_output(args.out_dir, "--out-dir", "folder")
        # Every output is planned first (see fileio.output_paths); both names a photo may get are checked,
        # as the metadata says later which it is.
        output_paths(photos, args.out_dir, ("color", "mask"))

    import numpy as np
    from PIL import Image

    from keras_cnn.export import litert_runtime as rt
    from keras_cnn.fileio import atomic_path

    meta = rt.read_metadata(metadata)
    # Another model's metadata would decode this one's output into a wrong image: refuse it. (Checked on
    # an interpreter without the XNNPACK delegate, which announces itself on stderr.)
    warning = rt.check_metadata(rt.load_interpreter(args.model, with_delegates=False), meta, args.model, metadata)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    interpreter = rt.load_interpreter(args.model, num_threads=args.threads)
    size = rt.input_size(interpreter)[0]
    colours = meta["application"] == "colorization"
    for path in photos:
        image = rt.read_photo(path)
        height, width = image.shape[:2]
        if colours:
            result = Image.fromarray(rt.colorize(interpreter, image, meta))
            border = rt.tile_border(interpreter, meta)
            what = (f"colours at {width}x{height}, in tiles of {size}x{size} keeping the central "
                    f"{size - 2 * border}x{size - 2 * border}")
        else:
            mask = rt.segment(interpreter, image)
            classes = rt.metadata_classes(meta) or 2
            step = 255 // max(classes - 1, 1)
            result = Image.fromarray((mask * step).astype(np.uint8))
            share = float(np.mean(mask > 0))
            what = f"mask at {width}x{height}, {100 * share:.1f}% of pixels not class 0"
        stem = os.path.splitext(os.path.basename(path))[0]
        out = args.out or os.path.join(args.out_dir, f"{stem}_{'color' if colours else 'mask'}.png")
        with atomic_path(out) as tmp:
            result.save(tmp, format="PNG")
        print(f"wrote {out} ({what})")


def _photos(paths):
    """The files of `paths`, a folder standing for the images in it."""
    from keras_cnn.fileio import list_images

    return [p for path in paths for p in (list_images(path) if os.path.isdir(path) else [path])]


def main(argv=None, prog=None):
    cli.main(lambda: run(parse_args(argv, prog)))


if __name__ == "__main__":
    main()
