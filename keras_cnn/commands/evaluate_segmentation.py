r"""Evaluate a trained segmenter: loss, foreground IoU, mean IoU, pixel accuracy, "mIOU".

    keras-cnn evaluate-segmentation --run-dir runs/weizmann
    keras-cnn evaluate-segmentation --run-dir runs/weizmann --checkpoint last --json \
        --data-dir /elsewhere/weizmann-horses
    keras-cnn evaluate-segmentation --model model.keras --preset weizmann_scratch \
        --data-dir ../shared/data/weizmann-horses --split validation

With --run-dir the data and the split are the run's own (its config.json); the
data flags below override it (e.g. a moved --data-dir). Without it, --model is
evaluated on the data of --preset plus those flags. Prints the figures beside
the all-background baseline and what a full run of the preset reaches (--json:
the metrics as JSON instead); --out also writes the JSON to a file.
"""

import json
import os

from keras_cnn import cli

DEFAULT_PRESET = "weizmann_scratch"
# The SegmentationConfig fields that say which data a model is evaluated on (the rest are training's).
DATA_FIELDS = ("dataset", "data_dir", "val_fraction", "flowers_url", "flowers_hashes", "flowers_split",
               "ignore_unlabelled", "trimap_background")


def parse_args(argv=None, prog=None):
    from keras_cnn.config import add_config_args
    from keras_cnn.segmentation.config import PRESETS, SegmentationConfig

    parser = cli.ArgumentParser(__doc__, prog=prog)
    parser.add_argument("--run-dir", help="a training run folder (config.json, best.keras, last.keras)")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best",
                        help="best.keras or last.keras of the run (default: best)")
    parser.add_argument("--model", help="a .keras segmenter (default: the run's --checkpoint)")
    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS),
                        help=f"data settings when there is no --run-dir (default: {DEFAULT_PRESET})")
    parser.add_argument("--split", choices=("train", "validation", "test"), default="validation")
    parser.add_argument("--full-size", action="store_true",
                        help="also score predictions resized back to each photo's and mask's own size")
    parser.add_argument("--flip-tta", action="store_true",
                        help="test-time augmentation: average the logits of each photo and of its mirror "
                             "image (two passes per photo)")
    parser.add_argument("--out", help="also write the metrics JSON here")
    parser.add_argument("--json", action="store_true",
                        help="print the metrics as JSON instead of the summary lines")
    add_config_args(parser, SegmentationConfig, only=DATA_FIELDS, shown_as=None,
                    title="data (default: the run's, else the --preset's)")
    return parser.parse_args(argv)


def run(args):
    from keras_cnn import config as config_lib
    from keras_cnn.errors import UserError
    from keras_cnn.fileio import atomic_write_text, check_input, check_output
    from keras_cnn.segmentation.config import PRESETS, SegmentationConfig

    # === Checks: before TensorFlow is imported or anything is written ===
    overrides = config_lib.overrides_from_args(args, SegmentationConfig)
    if args.run_dir:
        cfg = config_lib.load_run_config(SegmentationConfig, args.run_dir, overrides)
        model = args.model or os.path.join(args.run_dir, f"{args.checkpoint}.keras")
    elif args.model:
        cfg = config_lib.resolve(SegmentationConfig, PRESETS, args.preset, overrides)
        model = args.model
    else:
        raise UserError("pass --run-dir (a training run) or --model (a .keras file)")
    check_input(model, "--model" if args.model else f"--checkpoint {args.checkpoint}", "file")
    config_lib.check_input_paths(cfg)
    if args.out:
        # Never a file of the run (`--out RUN/best.keras`), the model or a photo or mask evaluated.
        check_output(args.out, "--out", "file", inputs=(model, cfg.data_dir))

    from keras_cnn.segmentation.deeplab_v3 import DeepLabV3Segmenter
    from keras_cnn.segmentation.evaluate import majority_baseline
    from keras_cnn.tasks import get_task
    from keras_cnn.training import load_model

    segmenter = load_model(model)
    if not isinstance(segmenter, DeepLabV3Segmenter):
        raise UserError(f"{model}: not a DeepLabV3 segmenter (it is a {type(segmenter).__name__})")
    results = get_task("segmentation").evaluate_model(segmenter, cfg, args.split, full_size=args.full_size,
                                                      flip_tta=args.flip_tta)
    results.update({"model": model, "split": args.split, "flip_tta": args.flip_tta})
    data = get_task("segmentation").load_data(cfg, splits=())
    results["baselines"] = {"majority_class": majority_baseline(
        data.pairs(args.split), data.decode_mask, segmenter.image_size, segmenter.num_classes)}
    text = json.dumps(results, indent=2) + "\n"
    if args.json:
        print(text, end="")
    else:
        from keras_cnn.summaries import figures, summary_lines

        tta = ", flip-averaged" if args.flip_tta else ""
        where = f"{args.split} ({results['examples']} pairs, {os.path.basename(model)}{tta})"
        for line in summary_lines("segmentation", cfg, results, results["baselines"]["majority_class"],
                                  PRESETS, where):
            print(line)
        for at in ("photo", "mask"):
            if f"{at}_size" in results:
                print(f"at each {at}'s own size: {figures('segmentation', results[f'{at}_size'])}")
    if args.out:
        atomic_write_text(args.out, text)


def main(argv=None, prog=None):
    cli.main(lambda: run(parse_args(argv, prog)))


if __name__ == "__main__":
    main()
