r"""Train a DeepLabV3 segmenter (SPEC part B).

    python scripts/train_segmentation.py --preset weizmann_scratch \
        --data-dir ../shared/data/weizmann-horses --run-dir runs/weizmann
    python scripts/train_segmentation.py --preset flowers17_imagenet --run-dir runs/flowers
    python scripts/train_segmentation.py --preset flowers17_deeplabv3 \
        --base-model runs/flowers/best.keras --run-dir runs/flowers_head
    python scripts/train_segmentation.py --run-dir runs/weizmann --resume

(`keras-cnn train-segmentation ...` is the same command.) Every
SegmentationConfig field is a flag (--image-size 160, --backbone mobilenetv2,
...) overriding the preset; --help shows the values of the preset given with
--preset. The run folder gets config.json, best.keras (by validation
foreground IoU), last.keras, history.csv, logs/, plots/ (per-epoch image /
true mask / predicted strips, loss and IoU curves) and metrics.json.
"""

import json
import sys

from keras_cnn import cli

DEFAULT_PRESET = "weizmann_scratch"


def parse_args(argv=None, prog=None):
    from keras_cnn.config import add_config_args
    from keras_cnn.segmentation.config import PRESETS, SegmentationConfig

    preset = cli.preset_choice(argv, PRESETS, DEFAULT_PRESET)
    parser = cli.ArgumentParser(__doc__, prog=prog)
    parser.add_argument("--preset", choices=sorted(PRESETS), help=f"named settings (default: {DEFAULT_PRESET})")
    parser.add_argument("--run-dir", required=True, help="folder for checkpoints, logs and plots")
    parser.add_argument("--resume", action="store_true", help=cli.RESUME_HELP)
    add_config_args(parser, SegmentationConfig, shown=PRESETS[preset], shown_as=preset)
    return parser.parse_args(argv)


def run(args):
    from keras_cnn.config import config_from_args
    from keras_cnn.segmentation.config import PRESETS, SegmentationConfig

    # === Checks: before TensorFlow is imported or anything is written ===
    cfg = config_from_args(args, SegmentationConfig, PRESETS, DEFAULT_PRESET)

    from keras_cnn.tasks import train

    # Progress bars redraw with carriage returns, which garble a log file.
    verbose = "auto" if sys.stdout.isatty() else 2
    results = train(cfg, args.run_dir, resume=args.resume, verbose=verbose)
    print(json.dumps(results, indent=2))


def main(argv=None, prog=None):
    cli.main(lambda: run(parse_args(argv, prog)))


if __name__ == "__main__":
    main()
