r"""Evaluate a trained segmenter: loss, foreground IoU, mean IoU, pixel accuracy, "mIOU".

    python scripts/evaluate_segmentation.py --run-dir runs/weizmann
    python scripts/evaluate_segmentation.py --run-dir runs/weizmann --checkpoint last \
        --data-dir /elsewhere/weizmann-horses
    python scripts/evaluate_segmentation.py --model model.keras --preset weizmann_scratch \
        --data-dir ../shared/data/weizmann-horses --split validation
    python scripts/evaluate_segmentation.py --run-dir runs/weizmann --full-size

With --run-dir the data and the split are the run's own (its config.json);
SegmentationConfig flags override it (e.g. a moved --data-dir). Without it,
--model is evaluated on the data of --preset plus flags. --full-size adds
"photo_size" and "mask_size": the predictions resized back to each photo's
own size (the mask resized to it by nearest neighbour) and to the mask's own
size (the labels exactly as given). Prints JSON; --out also writes it to a file.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_cnn import cli  # noqa: E402


def run():
    from keras_cnn import config as config_lib
    from keras_cnn.errors import UserError
    from keras_cnn.fileio import atomic_write_text
    from keras_cnn.segmentation.config import PRESETS, SegmentationConfig

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", help="a training run folder (config.json, best.keras, last.keras)")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best")
    parser.add_argument("--model", help="a .keras segmenter (default: the run's --checkpoint)")
    parser.add_argument("--preset", default="weizmann_scratch", choices=sorted(PRESETS),
                        help="data settings when there is no --run-dir")
    parser.add_argument("--split", choices=("train", "validation", "test"), default="validation")
    parser.add_argument("--full-size", action="store_true",
                        help="also score predictions resized back to each photo's and mask's own size")
    parser.add_argument("--out", help="also write the metrics JSON here")
    config_lib.add_config_args(parser, SegmentationConfig)
    args = parser.parse_args()
    overrides = config_lib.overrides_from_args(args, SegmentationConfig)

    from keras_cnn.segmentation.evaluate import evaluate_config, run_config

    if args.run_dir:
        cfg = run_config(args.run_dir, overrides)
        model = args.model or os.path.join(args.run_dir, f"{args.checkpoint}.keras")
    elif args.model:
        cfg = config_lib.resolve(SegmentationConfig, PRESETS, args.preset, overrides)
        model = args.model
    else:
        raise UserError("pass --run-dir (a training run) or --model (a .keras file)")
    results = evaluate_config(cfg, model, args.split, full_size=args.full_size)
    results.update({"model": model, "split": args.split})
    text = json.dumps(results, indent=2) + "\n"
    print(text, end="")
    if args.out:
        atomic_write_text(args.out, text)


if __name__ == "__main__":
    cli.quiet_tensorflow()
    cli.main(run)
