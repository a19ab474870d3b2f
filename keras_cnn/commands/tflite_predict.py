r"""Run an exported .tflite on a photo of any size as a phone app would (LiteRT + NumPy, no TensorFlow).

    python scripts/tflite_predict.py --model exported_models/unet/tflite/1/unet_int8.tflite \
        --image ../shared/data/weizmann-horses/images/horse001.jpg --out horse_colours.png

(`keras-cnn tflite-predict ...` is the same command.) The result has the
photo's own size, as `colorize` and `segment` write it. A colourizer's file
has a fixed input (32x32 unless exported with --image-size), so the photo
goes through it in tiles of that size, each with a border of real photo
around it as wide as the net looks (metadata.json beside the model says
how far), and the borders are dropped: the colours PNG equals `colorize`'s
up to int8 rounding. A segmenter sees the photo resized to its input size,
and its logits are resized back to the photo before the argmax; the mask
is written as class index scaled to 0..255. An annealed-mean colourizer's
colours are decoded from its "logits" with the palette in the metadata.
"""

import os
import sys

from keras_cnn import cli


def parse_args(argv=None, prog=None):
    parser = cli.ArgumentParser(__doc__, prog=prog)
    parser.add_argument("--model", required=True, help="a .tflite file written by scripts/export.py")
    parser.add_argument("--image", required=True, help="the photo (JPEG, PNG, ...)")
    parser.add_argument("--out", required=True, help="result PNG to write")
    parser.add_argument("--metadata", default=None, help="metadata.json (default: the one beside --model)")
    parser.add_argument("--threads", type=cli.at_least(1), default=None,
                        help="interpreter threads (default: LiteRT's)")
    return parser.parse_args(argv)


def run(args):
    from keras_cnn.fileio import check_input, check_output
    from keras_cnn.hardware import check_threads

    # === Checks: before anything is loaded or written ===
    check_threads(args.threads, "--threads")
    check_input(args.model, "--model", "file")  # (rt.read_photo checks --image)
    metadata = args.metadata or os.path.join(os.path.dirname(os.path.abspath(args.model)), "metadata.json")
    check_input(metadata, "--metadata", "file")
    check_output(args.out, "--out", "file", inputs=(args.model, args.image, metadata))

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
    image = rt.read_photo(args.image)
    height, width = image.shape[:2]
    interpreter = rt.load_interpreter(args.model, num_threads=args.threads)
    size = rt.input_size(interpreter)[0]
    if meta["application"] == "colorization":
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
    with atomic_path(args.out) as tmp:
        result.save(tmp, format="PNG")
    print(f"wrote {args.out} ({what})")


def main(argv=None, prog=None):
    cli.main(lambda: run(parse_args(argv, prog)))


if __name__ == "__main__":
    main()
