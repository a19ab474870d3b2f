r"""Segment a photo or a folder of photos with a trained segmenter.

    python scripts/segment.py --run-dir runs/weizmann --input photo.jpg --out-dir masks/
    python scripts/segment.py --model runs/weizmann/best.keras \
        --input ../shared/data/weizmann-horses/images --out-dir masks/

Any size: the photo is resized to the model's input and the prediction back
to the photo's size. Writes NAME_mask.png (0/255 for a two-class model, the
class index otherwise) and NAME_overlay.png (the photo with the object tinted).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_cnn import cli  # noqa: E402


def run():
    from keras_cnn.errors import UserError

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", help="a training run folder (uses its best.keras)")
    parser.add_argument("--model", help="a .keras segmenter")
    parser.add_argument("--input", required=True, nargs="+", help="image files and/or folders of images")
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args()
    if not (args.model or args.run_dir):
        raise UserError("pass --model (a .keras file) or --run-dir (a training run)")

    from keras_cnn.segmentation.deeplab_v3 import DeepLabV3Segmenter
    from keras_cnn.segmentation.predict import segment_paths
    from keras_cnn.tasks import open_run
    from keras_cnn.training import load_model

    path = args.model
    model = load_model(path) if path else open_run(args.run_dir).model
    if not isinstance(model, DeepLabV3Segmenter):
        raise UserError(f"{path}: not a segmenter of this project (it is a {type(model).__name__})")
    written = segment_paths(model, args.input, args.out_dir)
    print(f"wrote {len(written)} PNG(s) to {args.out_dir}")


if __name__ == "__main__":
    cli.quiet_tensorflow()
    cli.main(run)
