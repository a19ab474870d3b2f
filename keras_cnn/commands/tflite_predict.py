r"""Run an exported .tflite on a photo as a phone app would (LiteRT + NumPy, no TensorFlow).

    python scripts/tflite_predict.py --model exported_models/unet/tflite/1/unet_int8.tflite \
        --image ../shared/data/cifar10-horse-train/0000.jpg --out horse_colours.png

(`keras-cnn tflite-predict ...` is the same command.) The photo is fitted to
the model's fixed input size (as metadata.json beside the model says), run
through the LiteRT interpreter. The graph itself returns the answer: an argmax
colourizer its "colours" (uint8 RGB, written at the model's size), a segmenter
its "classes" (the mask, written as class index scaled to 0..255 at the
photo's size). An annealed-mean colourizer's colours are decoded from its
"logits" with the palette in the metadata.
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

    # === Checks: before anything is loaded or written ===
    check_input(args.model, "--model", "file")  # (rt.load_photo checks --image)
    metadata = args.metadata or os.path.join(os.path.dirname(os.path.abspath(args.model)), "metadata.json")
    check_input(metadata, "--metadata", "file")
    check_output(args.out, "--out", "file")

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
    size = meta["input_size"][0]
    photo, (height, width) = rt.load_photo(args.image, size, meta.get("image_fit", "centre_crop"))
    interpreter = rt.load_interpreter(args.model, num_threads=args.threads)
    outputs = rt.predict(interpreter, photo[None])
    if meta["application"] == "colorization":
        colours = outputs["colours"] if "colours" in outputs else rt.decode_colours(outputs["logits"], photo[None],
                                                                                   meta)
        result = Image.fromarray(colours[0])
        what = f"colours at {size}x{size}"
    else:
        mask = outputs["classes"][0]
        step = 255 // max(outputs["logits"].shape[-1] - 1, 1)
        result = Image.fromarray((mask * step).astype(np.uint8)).resize((width, height), Image.Resampling.NEAREST)
        share = float(np.mean(mask > 0))
        what = f"mask at {width}x{height}, {100 * share:.1f}% of pixels not class 0"
    with atomic_path(args.out) as tmp:
        result.save(tmp, format="PNG")
    print(f"wrote {args.out} ({what})")


def main(argv=None, prog=None):
    cli.main(lambda: run(parse_args(argv, prog)))


if __name__ == "__main__":
    main()
