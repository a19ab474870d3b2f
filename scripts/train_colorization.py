r"""Train a colourization net (grey CIFAR-10 class in, palette colours out).

    python scripts/train_colorization.py --preset cifar10_unet --run-dir runs/unet
    python scripts/train_colorization.py --preset cifar10_unet --source folder \
        --data-dir ../shared/data/cifar10-horse-train --run-dir runs/unet_folder
    python scripts/train_colorization.py --run-dir runs/unet --resume   # continue a run

Every field of ColorizationConfig is a flag and overrides the preset. The run
folder gets config.json, palette.npy, best.keras, last.keras, history.csv,
logs/ (TensorBoard), plots/ and metrics.json.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_cnn import cli  # noqa: E402


def run():
    from keras_cnn.colorization.config import PRESETS, ColorizationConfig
    from keras_cnn.config import add_config_args, overrides_from_args, resolve

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cifar10_unet", choices=sorted(PRESETS))
    parser.add_argument("--run-dir", required=True, help="folder for everything this run writes")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --run-dir from its last backup, with its saved config")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=None,
                        help="Keras progress output: 0 silent, 1 progress bar, 2 one line per epoch")
    add_config_args(parser, ColorizationConfig)
    args = parser.parse_args()
    cfg = resolve(ColorizationConfig, PRESETS, args.preset, overrides_from_args(args, ColorizationConfig))

    from keras_cnn.tasks import train

    metrics = train(cfg, args.run_dir, resume=args.resume,
                    verbose="auto" if args.verbose is None else args.verbose)
    if "validation" in metrics:
        v, g = metrics["validation"], metrics["baselines"]["grey_input"]
        print(f"validation: loss {v['loss']:.4f}  accuracy {100 * v['accuracy']:.1f}%  "
              f"delta E {v['delta_e']:.2f}  PSNR {v['psnr']:.2f} dB  "
              f"(grey input: accuracy {100 * g['accuracy']:.1f}%, delta E {g['delta_e']:.2f})")
        print(f"wrote {args.run_dir}")


if __name__ == "__main__":
    cli.quiet_tensorflow()
    cli.main(run)
