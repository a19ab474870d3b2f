r"""Train a colourization net (grey CIFAR-10 class in, palette colours out).

    keras-cnn train-colorization --preset cifar10_unet --run-dir runs/unet
    keras-cnn train-colorization --preset cifar10_unet --dataset folder \
        --data-dir ../shared/data/cifar10-horse-train --run-dir runs/unet_folder
    keras-cnn train-colorization --run-dir runs/unet --resume   # continue a run
    # pre-train on every CIFAR-10 class, then specialise on the horses (41 minutes on 2 Intel
    # Xeon cores; delta E 11.62 against cifar10_resunet's 11.66: docs/COLORIZATION_RESULTS.md)
    keras-cnn train-colorization --preset cifar10_all_resunet \
        --data-dir ../shared/data/cifar10-train --run-dir runs/all_resunet
    keras-cnn train-colorization --preset cifar10_resunet_from_all \
        --data-dir ../shared/data/cifar10-train --base-model runs/all_resunet/best.keras \
        --run-dir runs/resunet_from_all

Every field of ColorizationConfig is a flag and overrides the preset (flag
names: docs/CLI.md); --help shows the values of the preset given with
--preset. The run folder gets config.json, palette.npy, best.keras,
last.keras, history.csv, logs/ (TensorBoard), plots/ and metrics.json.
"""

from keras_cnn import cli

DEFAULT_PRESET = "cifar10_unet"


def parse_args(argv=None, prog=None):
    from keras_cnn.colorization.config import PRESETS, ColorizationConfig
    from keras_cnn.config import add_config_args

    preset = cli.preset_choice(argv, PRESETS, DEFAULT_PRESET)
    parser = cli.ArgumentParser(__doc__, prog=prog)
    parser.add_argument("--preset", choices=sorted(PRESETS), help=f"named settings (default: {DEFAULT_PRESET})")
    parser.add_argument("--run-dir", required=True, help="folder for everything this run writes")
    parser.add_argument("--resume", action="store_true", help=cli.RESUME_HELP)
    cli.add_verbose(parser)
    add_config_args(parser, ColorizationConfig, shown=PRESETS[preset], shown_as=preset)
    return parser.parse_args(argv)


def run(args):
    from keras_cnn.colorization.config import NEEDS_BASE_MODEL, PRESETS, ColorizationConfig
    from keras_cnn.config import config_from_args
    from keras_cnn.errors import UserError

    # === Checks: before TensorFlow is imported or anything is written ===
    cfg = config_from_args(args, ColorizationConfig, PRESETS, DEFAULT_PRESET)
    if args.preset in NEEDS_BASE_MODEL and not cfg.base_model:
        raise UserError(f"--preset {args.preset} continues a trained colourizer: pass --base-model "
                        "RUN/best.keras (e.g. of a cifar10_all_resunet run)")

    from keras_cnn.tasks import train

    metrics = train(cfg, args.run_dir, resume=args.resume, verbose=cli.verbosity(args))
    if "validation" in metrics:
        from keras_cnn.summaries import summary_lines

        where = f"validation ({metrics.get('validation_images', '?')} images, best.keras)"
        for line in summary_lines("colorization", cfg, metrics["validation"], metrics["baselines"]["grey_input"],
                                  PRESETS, where):
            print(line)
    if metrics:
        from keras_cnn.summaries import wrote_line

        print(wrote_line(args.run_dir, metrics))


def main(argv=None, prog=None):
    cli.main(lambda: run(parse_args(argv, prog)))


if __name__ == "__main__":
    main()
