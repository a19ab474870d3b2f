r"""Train a DeepLabV3 segmenter (SPEC part B).

    python scripts/train_segmentation.py --preset weizmann_scratch \
        --data-dir ../shared/data/weizmann-horses --run-dir runs/weizmann
    python scripts/train_segmentation.py --preset flowers17_imagenet --run-dir runs/flowers
    python scripts/train_segmentation.py --preset flowers17_deeplabv3 \
        --base-model runs/flowers/best.keras --run-dir runs/flowers_head
    python scripts/train_segmentation.py --run-dir runs/weizmann --resume

Every SegmentationConfig field is a flag (--image-size 160, --backbone
mobilenetv2, ...) overriding the preset. The run folder gets config.json,
best.keras (by validation foreground IoU), last.keras, history.csv, logs/,
plots/ (per-epoch image / true mask / predicted strips, loss and IoU curves)
and metrics.json.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_cnn import cli  # noqa: E402


def run():
    from keras_cnn import config as config_lib
    from keras_cnn.segmentation.config import PRESETS, SegmentationConfig

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="weizmann_scratch", choices=sorted(PRESETS))
    parser.add_argument("--run-dir", required=True, help="folder for checkpoints, logs and plots")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    config_lib.add_config_args(parser, SegmentationConfig)
    args = parser.parse_args()
    cfg = config_lib.resolve(SegmentationConfig, PRESETS, args.preset,
                             config_lib.overrides_from_args(args, SegmentationConfig))

    from keras_cnn.tasks import train

    # Progress bars redraw with carriage returns, which garble a log file.
    verbose = "auto" if sys.stdout.isatty() else 2
    results = train(cfg, args.run_dir, resume=args.resume, verbose=verbose)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    cli.quiet_tensorflow()
    cli.main(run)
