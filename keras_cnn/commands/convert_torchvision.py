r"""Convert torchvision's DeepLabV3-ResNet-50/101 weights (.pth) to a .keras segmenter.

    keras-cnn convert-torchvision \
        --weights deeplabv3_resnet101_coco-586e9e4e.pth --image-size 224 \
        --out runs/tv/deeplabv3_coco.keras
    keras-cnn train-segmentation --preset flowers17_deeplabv3 \
        --base-model runs/tv/deeplabv3_coco.keras --run-dir runs/flowers_tv

`deeplabv3_resnet101_coco-586e9e4e.pth` is the file torchvision downloads for
`deeplabv3_resnet101(weights="COCO_WITH_VOC_LABELS_V1")` (into
~/.cache/torch/hub/checkpoints/). It is read without torch; the depth (50 or
101) and the number of classes come from its tensors. The .keras model is
torchvision's network exactly (output stride 8, ASPP 12/24/36); it takes RGB
pixels 0-255 and applies torchvision's ImageNet normalisation, `(x / 255 -
mean) / std`, in its first layer. Without --num-classes it keeps the file's
21-class COCO/VOC classifier; the training script replaces it by the preset's
2-class one (--new-head).
"""

from keras_cnn import cli


def parse_args(argv=None, prog=None):
    parser = cli.ArgumentParser(__doc__, prog=prog)
    parser.add_argument("--weights", required=True, help="a torchvision DeepLabV3 state dict (.pth)")
    parser.add_argument("--out", required=True, help="the .keras segmenter to write")
    parser.add_argument("--image-size", type=cli.at_least(32), default=520,
                        help="fixed input size of the Keras model (torchvision evaluates at 520; "
                             "the assignment trains at 224)")
    parser.add_argument("--output-stride", type=int, choices=(8, 16), default=8,
                        help="8 is torchvision's network; 16 is cheaper and not identical")
    parser.add_argument("--num-classes", type=cli.at_least(1), default=None,
                        help="a new, randomly initialised classifier with this many classes "
                             "(default: keep the file's)")
    return parser.parse_args(argv)


def run(args):
    from keras_cnn.fileio import check_input, check_output

    # === Checks: before TensorFlow is imported or anything is written ===
    check_input(args.weights, "--weights", "file")
    check_output(args.out, "--out", "file")

    from keras_cnn.segmentation.torchvision_deeplab import convert_torchvision_deeplabv3, torch_parameter_count

    model = convert_torchvision_deeplabv3(args.weights, args.out, image_size=args.image_size,
                                          output_stride=args.output_stride, num_classes=args.num_classes)
    print(f"wrote {args.out}: {model.name}, {model.num_classes} classes, "
          f"{args.image_size}x{args.image_size} input, output stride {args.output_stride}, "
          f"{torch_parameter_count(model):,} parameters (torch's count, BatchNorm statistics "
          f"excluded), preprocessing {model.preprocessing!r} in the model")


def main(argv=None, prog=None):
    cli.main(lambda: run(parse_args(argv, prog)))


if __name__ == "__main__":
    main()
