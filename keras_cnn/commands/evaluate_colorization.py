r"""Evaluate a trained colourization run on its validation images, beside the trivial baselines.

    keras-cnn evaluate-colorization --run-dir runs/unet
    keras-cnn evaluate-colorization --run-dir runs/unet --checkpoint last --json
    keras-cnn evaluate-colorization --run-dir runs/unet --decode annealed --temperature 0.38 \
        --out runs/unet/eval_annealed.json --activations-dir runs/unet/activations

Prints validation loss, pixel accuracy (palette labels), mean delta E (CIE76,
against the unquantised true colours) and PSNR, for the net, for the grey
input shown as colour (the baseline) and for the palette-snapped truth (the
ceiling), and what a full run of the preset reaches. The data comes from the
run's config unless --data-dir points at another image folder. --classes picks
class folders instead of the run's own (the horse validation images of a run
trained on every class: --classes horse). --json prints the figures as JSON
instead of the summary lines; --out also writes them to a file.
"""

import dataclasses
import json
import os

from keras_cnn import cli


def parse_args(argv=None, prog=None):
    parser = cli.ArgumentParser(__doc__, prog=prog)
    parser.add_argument("--run-dir", required=True, help="a finished training run (config.json, best.keras)")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best",
                        help="best.keras or last.keras of the run (default: best)")
    parser.add_argument("--data-dir", default=None,
                        help="evaluate on ALL images of this folder instead of the run's validation split")
    parser.add_argument("--classes", default=None,
                        help="class folders of a class-tree data folder to evaluate on ('horse', 'all', "
                             "'horse,deer'): their validation split, or with --data-dir all their images")
    parser.add_argument("--decode", choices=("argmax", "annealed"), default=None,
                        help="default: the run's own setting")
    parser.add_argument("--temperature", type=cli.positive_float, default=None,
                        help="annealed-mean T (default: the run's)")
    parser.add_argument("--batch-size", type=cli.at_least(1), default=100)
    parser.add_argument("--out", default=None, help="also write the figures as JSON here")
    parser.add_argument("--json", action="store_true",
                        help="print the figures as JSON instead of the summary lines")
    parser.add_argument("--activations-dir", default=None,
                        help="write each layer's feature maps for one validation image here")
    parser.add_argument("--image-index", type=cli.at_least(0), default=0,
                        help="which validation image for the maps")
    return parser.parse_args(argv)


def run(args):
    from keras_cnn.colorization.config import ColorizationConfig
    from keras_cnn.config import check_input_paths, load_run_config
    from keras_cnn.fileio import check_input, check_output

    # === Checks: before TensorFlow is imported or anything is written ===
    cfg = load_run_config(ColorizationConfig, args.run_dir)
    if args.data_dir:
        check_input(args.data_dir, "--data-dir", "folder")
    else:
        check_input_paths(cfg)
    if args.out:
        # Never a file of the run (`--out RUN/config.json`) nor an image evaluated.
        check_output(args.out, "--out", "file", inputs=(args.data_dir or cfg.data_dir,))
    if args.activations_dir:
        check_output(args.activations_dir, "--activations-dir", "folder")
    check_input(os.path.join(args.run_dir, f"{args.checkpoint}.keras"), f"--checkpoint {args.checkpoint}", "file")

    from keras_cnn.colorization.evaluate import baselines, evaluate
    from keras_cnn.colorization.predict import save_activations, superres_figure
    from keras_cnn.data.cifar10 import load_folder
    from keras_cnn.errors import UserError
    from keras_cnn.fileio import atomic_write_text
    from keras_cnn.tasks import open_run

    run = open_run(args.run_dir)
    model, palette, cfg = run.load_model(args.checkpoint), run.assets["palette"], run.config
    cfg = dataclasses.replace(cfg, decode=args.decode or cfg.decode,
                              temperature=cfg.temperature if args.temperature is None else args.temperature)
    if args.data_dir:
        images, _ = load_folder(args.data_dir, val_fraction=0.0, classes=args.classes or "")
    else:
        if args.classes is not None:
            if cfg.source != "folder":
                raise UserError(f"--classes picks class folders, but {args.run_dir} read --dataset {cfg.source}")
            cfg = dataclasses.replace(cfg, classes=args.classes)
        _, images = run.task.load_data(cfg)
    if len(images) == 0:
        raise UserError("no validation images to evaluate on")
    if args.activations_dir and args.image_index >= len(images):
        raise UserError(f"--image-index {args.image_index} is out of range 0..{len(images) - 1}")
    result = {"checkpoint": args.checkpoint, "decode": cfg.decode, "temperature": cfg.temperature,
              "images": len(images),
              "model": evaluate(model, images, palette, args.batch_size, cfg.decode, cfg.temperature),
              **baselines(images, palette)}
    from keras_cnn.colorization.config import PRESETS
    from keras_cnn.summaries import figures, summary_lines

    text = json.dumps(result, indent=2) + "\n"
    if args.json:
        print(text, end="")
    else:
        where = (f"{args.data_dir or 'validation'} ({len(images)} images, {args.checkpoint}.keras, "
                 f"{cfg.decode} decoding)")
        for line in summary_lines("colorization", cfg, result["model"], result["grey_input"], PRESETS, where):
            print(line)
        print(f"ceiling, the true colours snapped to the palette: {figures('colorization', result['palette_truth'])}")
    if args.out:
        atomic_write_text(args.out, text)
    if args.activations_dir:
        written = save_activations(model, palette, images[args.image_index], args.activations_dir)
        if cfg.downsize_input:
            path = os.path.join(args.activations_dir, "superres.png")
            superres_figure(model, palette, images[:10], path)
            written.append(path)
        print(f"wrote {len(written)} PNG(s) to {args.activations_dir}")


def main(argv=None, prog=None):
    cli.main(lambda: run(parse_args(argv, prog)))


if __name__ == "__main__":
    main()
