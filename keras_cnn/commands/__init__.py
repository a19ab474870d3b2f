"""The `keras-cnn` command: one subcommand per job, each in its own module here.

    keras-cnn train-colorization --preset cifar10_unet --run-dir runs/unet
    keras-cnn <command> --help
    keras-cnn --version

A subcommand's module is imported only when that subcommand runs (or for
this overview's one-line summaries, which read only the light module tops),
so `keras-cnn --help` and `keras-cnn <command> --help` never wait for
TensorFlow. Each module has `main(argv=None, prog=None)`; `scripts/*.py` (for
a checkout without the package installed) call the same functions. The flag
names follow one vocabulary across both applications (`keras_cnn.vocabulary`,
docs/CLI.md).
"""

import importlib
import sys

# Module names; the subcommand is the name with dashes.
MODULES = (
    "train_colorization",
    "evaluate_colorization",
    "colorize",
    "train_segmentation",
    "evaluate_segmentation",
    "segment",
    "segmentation_summary",
    "convert_torchvision",
    "export",
    "finetune_int8",
    "int8_study",
    "serving_client",
    "tflite_predict",
    "benchmark",
    "benchmark_distribute",
)
COMMANDS = {m.replace("_", "-"): m for m in MODULES}
PROG = "keras-cnn"


def load(command):
    """The module of a subcommand name (`train-colorization`)."""
    return importlib.import_module(f"{__name__}.{COMMANDS[command]}")


def overview():
    lines = [f"usage: {PROG} <command> [options]   ({PROG} <command> --help for its options; "
             f"{PROG} --version)", "", "commands:"]
    for command in COMMANDS:
        summary = (load(command).__doc__ or "").strip().splitlines()[0]
        lines.append(f"  {command:<23s}{summary}")
    return "\n".join(lines)


def main(argv=None):
    """`keras-cnn <command> ...`: runs the command's `main` on the rest of `argv`."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(overview())
        sys.exit(0 if argv else 2)
    if argv[0] == "--version":
        from keras_cnn import __version__

        print(f"{PROG} {__version__}")
        sys.exit(0)
    command = argv[0]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}; choose one of: {', '.join(COMMANDS)} "
              f"(see {PROG} --help)", file=sys.stderr)
        sys.exit(2)
    load(command).main(argv[1:], prog=f"{PROG} {command}")


if __name__ == "__main__":
    main()
