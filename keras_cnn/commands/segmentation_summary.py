r"""Parameter counts and shapes of DeepLabV3 on each backbone (random weights, no download).

    keras-cnn segmentation-summary
    keras-cnn segmentation-summary --image-size 513 --output-stride 8 --backbones resnet101

Prints one row per backbone: backbone / head / total parameters, the feature
map and logit shapes, the convolutions' multiply-accumulates per image, and
torchvision's published figures where there are some (21 classes).
"""

import json

from keras_cnn import cli


def parse_args(argv=None, prog=None):
    from keras_cnn.segmentation.config import BACKBONES, MAX_CLASSES, MIN_IMAGE_SIZE

    parser = cli.ArgumentParser(__doc__, prog=prog)
    parser.add_argument("--backbones", nargs="+", choices=BACKBONES,
                        help="default: every backbone (the EfficientNet-Lite rows without their weights)")
    parser.add_argument("--image-size", type=cli.at_least(MIN_IMAGE_SIZE), default=224)
    parser.add_argument("--output-stride", type=int, choices=(8, 16, 32), default=16)
    parser.add_argument("--num-classes", type=cli.at_least(1), default=21,
                        help=f"21 = the COCO/VOC head of torchvision's published models (at most {MAX_CLASSES})")
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    return parser.parse_args(argv)


def run(args):
    from keras_cnn.segmentation.summary import DEFAULT_BACKBONES, summarize

    rows = summarize(args.backbones or DEFAULT_BACKBONES, args.image_size, args.output_stride, args.num_classes)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"DeepLabV3 at {args.image_size}x{args.image_size}, output stride {args.output_stride}, "
          f"{args.num_classes} classes, ASPP rates {rows[0]['aspp_rates']}, 256 channels")
    print(f"{'backbone':<19}{'backbone':>13}{'head':>12}{'total':>13}  {'features':<15}{'logits':<16}"
          f"{'GMACs':>7}")
    for r in rows:
        print(f"{r['backbone']:<19}{r['backbone_params']:>13,}{r['head_params']:>12,}{r['total_params']:>13,}  "
              f"{'x'.join(map(str, r['feature_shape'])):<15}{'x'.join(map(str, r['output_shape'])):<16}"
              f"{r['conv_gmacs']:>7.2f}")
    for r in rows:
        if r["published"]:
            print(f"published, for {r['backbone']}: {r['published']}")


def main(argv=None, prog=None):
    cli.main(lambda: run(parse_args(argv, prog)))


if __name__ == "__main__":
    main()
