r"""Parameter counts and shapes of DeepLabV3 on each backbone (random weights, no download).

    python scripts/segmentation_summary.py
    python scripts/segmentation_summary.py --image-size 513 --output-stride 8 --backbones resnet101

Prints one row per backbone: backbone / head / total parameters, the feature
map and logit shapes, the convolutions' multiply-accumulates per image, and
the SPEC's published figures where there are some (torchvision's, 21 classes).
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_cnn import cli  # noqa: E402


def run():
    from keras_cnn.segmentation.backbones import BACKBONES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", choices=BACKBONES,
                        default=["resnet50", "resnet101", "mobilenetv2", "small_resnet", "tiny"])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--output-stride", type=int, choices=(8, 16, 32), default=16)
    parser.add_argument("--num-classes", type=int, default=21, help="21 = the COCO/VOC head of the SPEC")
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    args = parser.parse_args()

    from keras_cnn.segmentation.summary import summarize

    rows = summarize(args.backbones, args.image_size, args.output_stride, args.num_classes)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"DeepLabV3 at {args.image_size}x{args.image_size}, output stride {args.output_stride}, "
          f"{args.num_classes} classes, ASPP rates {rows[0]['aspp_rates']}, 256 channels")
    print(f"{'backbone':<13}{'backbone':>13}{'head':>12}{'total':>13}  {'features':<15}{'logits':<16}"
          f"{'GMACs':>7}")
    for r in rows:
        print(f"{r['backbone']:<13}{r['backbone_params']:>13,}{r['head_params']:>12,}{r['total_params']:>13,}  "
              f"{'x'.join(map(str, r['feature_shape'])):<15}{'x'.join(map(str, r['output_shape'])):<16}"
              f"{r['conv_gmacs']:>7.2f}")
    for r in rows:
        if r["spec"]:
            print(f"SPEC, for {r['backbone']}: {r['spec']}")


if __name__ == "__main__":
    cli.quiet_tensorflow()
    cli.main(run)
