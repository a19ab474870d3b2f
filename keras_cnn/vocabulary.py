"""One name per thing on the command line, for both applications.

`TERMS` is the vocabulary: each flag that means the same thing in the
colourization and the segmentation commands, what it means, and the old
names it replaced. docs/CLI.md prints the same table, and
tests/test_cli_vocabulary.py walks every subcommand's parser against it: a
flag spelled one way in one command and another way in the next fails it.

`CONFIG_FLAGS` is where a config field's command-line name differs from the
field (`ColorizationConfig.source` is `--dataset`): the field keeps its name
in `config.json`, so runs written before the rename still load, and only
the flag changed. An old name still works and prints one line on stderr,
`warning: --source is deprecated; use --dataset` (`add_alias`).

This module is imported by `--help` and must not import TensorFlow.
"""

import argparse
import collections
import sys

Term = collections.namedtuple("Term", "flag meaning commands old")
"""`flag` means `meaning` in every one of `commands` (the subcommands that have it). `old`: the
(old flag, the subcommands where it was used) it replaced, each still accepted there with a
deprecation line."""

_TRAIN = ("train-colorization", "train-segmentation")

TERMS = (
    Term("--run-dir", "a training run folder: what train-* writes (config.json, best.keras, last.keras, "
                      "metrics.json, ...) and what the other commands read",
         (*_TRAIN, "evaluate-colorization", "colorize", "evaluate-segmentation", "segment", "export",
          "finetune-int8", "int8-study"), ()),
    Term("--checkpoint", "which model of the run folder: best (best.keras, the default) or last (last.keras)",
         ("evaluate-colorization", "colorize", "evaluate-segmentation", "segment", "export", "finetune-int8"), ()),
    Term("--model", "a trained model file to use instead of a run's checkpoint: a .keras file (colorize, "
                    "segment, evaluate-segmentation) or a .tflite file (tflite-predict); for serving-client, the "
                    "model's name on the server",
         ("colorize", "evaluate-segmentation", "segment", "tflite-predict", "serving-client"), ()),
    Term("--preset", "named settings of a training recipe (cifar10_unet, weizmann_scratch, ...)",
         (*_TRAIN, "evaluate-segmentation"), ()),
    Term("--dataset", "where the images come from: archive, tfds or folder for a colourizer; folder or "
                      "flowers17 for a segmenter",
         (*_TRAIN, "evaluate-segmentation"), (("--source", ("train-colorization",)),)),
    Term("--data-dir", "the image folder (for a downloaded dataset: its download folder)",
         (*_TRAIN, "evaluate-colorization", "evaluate-segmentation", "finetune-int8"), ()),
    Term("--num-classes", "how many classes the net chooses among for each pixel: the palette's colours for "
                          "a colourizer, the mask classes (background included) for a segmenter",
         (*_TRAIN, "segmentation-summary", "convert-torchvision"), (("--num-colours", ("train-colorization",)),)),
    Term("--backbone", "the network to build, by name: unet, resunet, effnet_unet, ... for a colourizer; the "
                       "feature extractor under DeepLabV3 (small_resnet, resnet101, efficientnet_lite0, ...) "
                       "for a segmenter", _TRAIN, (("--model", ("train-colorization",)),)),
    Term("--backbone-weights", "the backbone's starting weights: imagenet, a weights file, or empty for random",
         _TRAIN, ()),
    Term("--base-model", "a trained .keras model to continue training from", _TRAIN, ()),
    Term("--input", "photos to read: image files and/or folders of images, several allowed",
         ("colorize", "segment", "tflite-predict", "serving-client"),
         (("--image", ("tflite-predict",)), ("photos without --input", ("serving-client",)))),
    Term("--out-dir", "a folder for what a command writes per photo (or, for finetune-int8, the new run folder)",
         ("colorize", "segment", "tflite-predict", "serving-client", "finetune-int8"),
         (("--out", ("serving-client", "tflite-predict")),)),
    Term("--out", "the one result a command writes: a JSON file, a .keras file, or export's root folder",
         ("evaluate-colorization", "evaluate-segmentation", "convert-torchvision", "export", "int8-study",
          "benchmark", "benchmark-distribute"), ()),
    Term("--json", "print the figures as JSON on stdout instead of the summary lines",
         ("evaluate-colorization", "evaluate-segmentation", "segmentation-summary"), ()),
    Term("--image-size", "the square size, in pixels, the net sees (photos are resized or tiled to it)",
         ("train-segmentation", "segmentation-summary", "convert-torchvision", "export", "benchmark-distribute",
          "serving-client"), (("--size", ("serving-client",)),)),
    Term("--batch-size", "images per step (per replica when training)",
         (*_TRAIN, "evaluate-colorization", "colorize", "benchmark-distribute"), ()),
    Term("--flip-tta", "a segmenter averages each photo's logits with its mirror image's (two passes per photo)",
         ("evaluate-segmentation", "segment", "export"), ()),
)

# Config fields whose flag is not the field's own name, per config class name.
CONFIG_FLAGS = {
    "ColorizationConfig": {"source": "dataset", "num_colours": "num_classes", "model": "backbone"},
}


def field_flag(cls_name, field):
    """The flag name (without dashes, with underscores) of a config field of the class named `cls_name`."""
    return CONFIG_FLAGS.get(cls_name, {}).get(field, field)


def old_field_flags(cls_name):
    """{old flag name: new flag name} of the renamed fields of the class named `cls_name`."""
    return dict(CONFIG_FLAGS.get(cls_name, {}))


# === Old names ===

def warn_deprecated(old, new):
    """The one line an old flag prints on stderr."""
    print(f"warning: {old} is deprecated; use {new}", file=sys.stderr)


def deprecated_action(base, canonical):
    """An argparse action class that does what `base` does after printing the deprecation line."""

    class Deprecated(base):
        def __call__(self, parser, namespace, values, option_string=None):
            warn_deprecated(option_string, canonical)
            super().__call__(parser, namespace, values, option_string)

    Deprecated.canonical = canonical
    return Deprecated


def add_alias(container, old, action):
    """Adds `old` as a hidden, deprecated spelling of `action` (an argparse action of `container`).

    The alias stores into the same destination with the same type, choices
    and nargs, and prints `warning: OLD is deprecated; use NEW` when used. A
    required flag stops being required to argparse (the alias may stand in
    for it); `cli.ArgumentParser` checks it after parsing instead.
    """
    canonical = action.option_strings[0]
    kwargs = {"dest": action.dest, "default": argparse.SUPPRESS, "help": argparse.SUPPRESS}
    if action.nargs != 0:  # a flag with a value
        kwargs.update(type=action.type, choices=action.choices, nargs=action.nargs, metavar=action.metavar)
    alias = container.add_argument(old, action=deprecated_action(type(action), canonical), **kwargs)
    if action.required:
        action.required = False
        action.required_unless_alias = True
    return alias
