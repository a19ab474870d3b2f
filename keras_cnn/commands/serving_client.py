r"""Send photos to a running TensorFlow Serving over REST or gRPC and save what comes back.

    python scripts/serving_client.py --rest http://localhost:8501 --model unet \
        --size 32 --out client_out ../shared/data/cifar10-horse-train/0000.jpg
    python scripts/serving_client.py --grpc localhost:8500 --model unet --bytes \
        --out client_out ../shared/data/cifar10-horse-train/0000.jpg

(`keras-cnn serving-client ...` is the same command.) By default the photos
are decoded here and sent as uint8 pixels to the `serving_default` signature
(with --size N: fitted to N x N first and sent as one batch; without it: one
request per photo at its own size). With --bytes the encoded files are sent as
they are to `serving_bytes`, which decodes and fits them in the server. For
each photo <out>/<stem>_colours.png (colourizer) or <out>/<stem>_mask.png
(segmenter, class index scaled to 0..255) is written.
"""

import os
import urllib.parse

from keras_cnn import cli


def _save_outputs(outputs, stems, out_dir):
    import numpy as np
    from PIL import Image

    from keras_cnn.errors import UserError
    from keras_cnn.fileio import atomic_path

    if "colours" in outputs:
        images, suffix = np.asarray(outputs["colours"]).astype(np.uint8), "colours"
    elif "mask" in outputs:
        classes = np.asarray(outputs["probabilities"]).shape[-1] if "probabilities" in outputs else 2
        images = (np.asarray(outputs["mask"]) * (255 // max(classes - 1, 1))).astype(np.uint8)
        suffix = "mask"
    else:
        raise UserError(f"server answered with outputs {sorted(outputs)}; expected colours or mask")
    written = []
    for stem, image in zip(stems, images):
        path = os.path.join(out_dir, f"{stem}_{suffix}.png")
        with atomic_path(path) as tmp:
            Image.fromarray(image).save(tmp, format="PNG")
        written.append(path)
    return written


def check_address(args):
    """A `UserError` unless --rest is an http(s) URL or --grpc is HOST:PORT."""
    from keras_cnn.errors import UserError

    if args.rest:
        # As `clients.rest_url` reads it: a bare host:port means http.
        url = args.rest if "://" in args.rest else "http://" + args.rest
        try:
            parts = urllib.parse.urlsplit(url)
            parts.port  # noqa: B018  (raises ValueError on a bad port)
        except ValueError as e:
            raise UserError(f"--rest {args.rest}: not a URL ({e})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UserError(f"--rest {args.rest}: not an http(s) URL like http://localhost:8501")
    else:
        host, _, port = args.grpc.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise UserError(f"--grpc {args.grpc}: not HOST:PORT like localhost:8500")


def parse_args(argv=None, prog=None):
    parser = cli.ArgumentParser(__doc__, prog=prog)
    server = parser.add_mutually_exclusive_group(required=True)
    server.add_argument("--rest", metavar="URL", help="REST address, e.g. http://localhost:8501")
    server.add_argument("--grpc", metavar="HOST:PORT", help="gRPC address, e.g. localhost:8500")
    parser.add_argument("--model", required=True, help="model name in models.config")
    parser.add_argument("--version", type=cli.at_least(1), default=None,
                        help="model version (default: the server's latest)")
    parser.add_argument("--bytes", action="store_true", help="send the encoded files to serving_bytes")
    parser.add_argument("--size", type=cli.at_least(1), default=None,
                        help="fit photos to SIZE x SIZE (centre crop) here and send them as one batch")
    parser.add_argument("--out", required=True, help="folder for the result PNGs")
    parser.add_argument("--timeout", type=cli.positive_float, default=60.0,
                        help="seconds per request (default: 60)")
    parser.add_argument("images", nargs="+", help="photo files")
    return parser.parse_args(argv)


def run(args):
    from keras_cnn.errors import UserError
    from keras_cnn.fileio import check_image_file, check_input, check_output

    # === Checks: before anything is sent or written ===
    check_address(args)
    for path in args.images:
        check_input(path, "image", "file")
        reason = check_image_file(path)
        if reason:
            raise UserError(f"{path}: {reason}")
    check_output(args.out, "--out", "folder")

    import numpy as np

    from keras_cnn.data.cifar10 import load_image
    from keras_cnn.export import clients
    from keras_cnn.fileio import read_image

    def send(**inputs):
        if args.rest:
            return clients.rest_predict(args.rest, args.model, version=args.version, timeout=args.timeout, **inputs)
        return clients.grpc_predict(args.grpc, args.model, version=args.version, timeout=args.timeout, **inputs)

    stems = [os.path.splitext(os.path.basename(p))[0] for p in args.images]
    if args.bytes:
        blobs = []
        for path in args.images:
            with open(path, "rb") as f:
                blobs.append(f.read())
        batches = [(stems, send(encoded=blobs))]
    elif args.size:
        batches = [(stems, send(images=np.stack([load_image(p, args.size) for p in args.images])))]
    else:
        batches = []
        for stem, path in zip(stems, args.images):
            # The package's one image reader: size-checked before decoding, one-line errors.
            batches.append(([stem], send(images=read_image(path)[None])))
    os.makedirs(args.out, exist_ok=True)
    for batch_stems, outputs in batches:
        for path in _save_outputs(outputs, batch_stems, args.out):
            print(f"wrote {path}")


def main(argv=None, prog=None):
    cli.main(lambda: run(parse_args(argv, prog)))


if __name__ == "__main__":
    main()
