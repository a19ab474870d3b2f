r"""Send photos to a running TensorFlow Serving over REST or gRPC and save what comes back.

    keras-cnn serving-client --rest http://localhost:8501 --model unet \
        --image-size 32 --input ../shared/data/cifar10-horse-train/0000.jpg --out-dir client_out
    keras-cnn serving-client --grpc localhost:8500 --model unet --bytes \
        --input ../shared/data/cifar10-horse-train/0000.jpg --out-dir client_out

By default the photos are decoded here and sent as uint8 pixels to the
`serving_decoded` signature, which returns the colours or the mask alone
(with --image-size N: fitted to N x N first and sent in batches; without it:
one request per photo at its own size). With --bytes the encoded files are
sent as they are to `serving_bytes`, which decodes them in the server and
answers each at its own size. For each photo <out-dir>/<stem>_colours.png (colourizer) or
<out-dir>/<stem>_mask.png (segmenter, class index scaled to 0..255) is written, as
each reply comes. A folder given to --input stands for the images in it.

The model's signature is read from the server first, and every reply is
checked against it and against what was sent (`clients.read_reply`): a reply
with the wrong number of results, shapes or dtypes, or values out of range is
one line naming the server, not a written file. No request or reply may
pass 256 MiB (`clients.MAX_REPLY_BYTES`): batches are split to fit, and a
photo too big for one request is refused from its header, before it is
decoded (over REST, where every number is JSON text, that is a photo of
several megapixels).

--timeout bounds each whole request (connecting, sending and the complete
reply), so a server that answers a byte at a time is given up on after that
long, not waited on read by read. No output replaces a photo given or
anything but a regular file, and two photos that would write the same name
(a/x.jpg and b/x.jpg, or x.jpg and x.png) are refused before anything is sent.
"""

import argparse
import os
import sys
import urllib.parse

from keras_cnn import cli, vocabulary


def _save_outputs(outputs, stems, out_dir, kind, classes):
    """Writes <out_dir>/<stem>_colours.png or _mask.png per image; returns the paths.

    `outputs` come checked by `clients.read_reply`: colours uint8 RGB, mask
    uint8 classes below `classes`.
    """
    import numpy as np
    from PIL import Image

    from keras_cnn.fileio import atomic_path

    images = outputs[kind]
    if "sizes" in outputs:  # serving_bytes pads a request's pictures to the largest: each back to its own size
        images = [image[:h, :w] for image, (h, w) in zip(images, outputs["sizes"])]
    written = []
    for stem, image in zip(stems, images):
        if kind == "mask":
            image = (image * (255 // max(classes - 1, 1))).astype(np.uint8)
        path = os.path.join(out_dir, f"{stem}_{kind}.png")
        with atomic_path(path) as tmp:
            Image.fromarray(image).save(tmp, format="PNG")
        written.append(path)
    return written


def _batches(items, fits):
    """`items` in consecutive groups, each as long as `fits(group)` allows (at least one item)."""
    group = []
    for item in items:
        if group and not fits(group + [item]):
            yield group
            group = []
        group.append(item)
    if group:
        yield group


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
    vocabulary.add_alias(parser, "--size", parser.add_argument(
        "--image-size", dest="size", metavar="N", type=cli.at_least(1), default=None,
        help="fit photos to N x N (centre crop) here and send them in batches"))
    vocabulary.add_alias(parser, "--out", parser.add_argument(
        "--out-dir", dest="out", metavar="DIR", required=True, help="folder for the result PNGs"))
    parser.add_argument("--timeout", type=cli.positive_float, default=60.0,
                        help="seconds per request (default: 60)")
    parser.add_argument("--input", nargs="+", default=[], metavar="PATH",
                        help="photo files and/or folders of photos")
    # Photos given without --input: the old spelling, still read.
    parser.add_argument("photos", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.photos:
        print("warning: photos without --input are deprecated; use --input PHOTO ...", file=sys.stderr)
    if not args.input + args.photos:
        parser.error("the following arguments are required: --input")
    args.images = _photos(args.input + args.photos)
    return args


def _photos(paths):
    """The files of `paths`, a folder standing for the images in it."""
    from keras_cnn.fileio import list_images

    return [p for path in paths for p in (list_images(path) if os.path.isdir(path) else [path])]


def _too_big(what, protocol, reply, request):
    """The line for a photo whose request or reply would pass the clients' limits."""
    from keras_cnn.export import clients

    sending = reply <= clients.MAX_REPLY_BYTES  # else the reply is what does not fit
    size, limit = (request, clients.MAX_MESSAGE_BYTES) if sending else (reply, clients.MAX_REPLY_BYTES)
    hints = ["--image-size N to fit photos to N x N here"]
    if protocol == "rest":
        hints.append("--grpc (its numbers travel in binary)")
    return (f"{what} would take about {size / 2 ** 20:,.0f} MiB {'to send' if sending else 'to answer'} over "
            f"{protocol.upper()}, more than the {limit / 2 ** 20:,.0f} MiB this client "
            f"{'sends' if sending else 'reads'} at once; pass {', or '.join(hints)}")


def run(args):
    from keras_cnn.errors import UserError
    from keras_cnn.fileio import check_image_file, check_input, check_output, output_paths

    # === Checks: before anything is sent or written ===
    check_address(args)
    for path in args.images:
        check_input(path, "image", "file")
        reason = check_image_file(path)
        if reason:
            raise UserError(f"{path}: {reason}")
    check_output(args.out, "--out-dir", "folder")
    # Every output is planned before anything is sent: none replaces an input or anything but a regular
    # file, and no two photos write the same name (a/x.jpg and b/x.jpg, or x.jpg and x.png). Both names
    # a photo may get are checked, as the server says which it is only later.
    output_paths(args.images, args.out, ("colours", "mask"), "--out-dir")

    import numpy as np

    from keras_cnn.data.cifar10 import load_image
    from keras_cnn.export import clients
    from keras_cnn.fileio import image_size, read_image

    # === The model, as the server describes it ===
    protocol = "rest" if args.rest else "grpc"
    where = clients.rest_url(args.rest, args.model, args.version) if args.rest else args.grpc

    def signature_of(name):
        if args.rest:
            return clients.rest_signature(args.rest, args.model, name, args.version, args.timeout)
        return clients.grpc_signature(args.grpc, args.model, name, args.version, args.timeout)

    default = signature_of("serving_default")
    kind, classes = default.kind, default.classes
    if kind is None:
        raise UserError(f"model {args.model} at {where} returns {', '.join(sorted(default.outputs))}; "
                        "serving-client reads colourizers (colours) and segmenters (mask)")
    # Only the picture is written, so only the picture is asked for: serving_bytes and serving_decoded
    # return it alone (a model exported before serving_decoded existed answers serving_default).
    signature = default
    if args.bytes:
        signature = signature_of("serving_bytes")
    else:
        try:
            signature = signature_of("serving_decoded")
        except UserError as e:
            if "has no signature" not in str(e):
                raise
    # Over gRPC only what is written comes back.
    wanted = None if args.rest else tuple(n for n in (kind, "sizes") if n in signature.outputs)

    def send(**inputs):
        if args.rest:
            return clients.rest_predict(args.rest, args.model, version=args.version, timeout=args.timeout,
                                        signature=signature, classes=classes, **inputs)
        return clients.grpc_predict(args.grpc, args.model, version=args.version, timeout=args.timeout,
                                    signature=signature, outputs=wanted, classes=classes, **inputs)

    def sizes(count, size, sent_bytes=None):
        """(reply, request) bytes of `count` photos of `size` (H, W; for files, the largest), sent as pixels or,
        with `sent_bytes`, as encoded files of that many bytes."""
        request = clients.request_bytes(count, size, protocol) if sent_bytes is None else sent_bytes
        return clients.reply_bytes(signature, count, size, protocol, wanted), request

    def fits(reply_and_request):
        reply, request = reply_and_request
        return reply <= clients.MAX_REPLY_BYTES and request <= clients.MAX_MESSAGE_BYTES

    def finish(outputs, group):
        n = classes or (outputs["probabilities"].shape[-1] if "probabilities" in outputs else 2)
        for path in _save_outputs(outputs, [stem for stem, _ in group], args.out, kind, n):
            print(f"wrote {path}")

    # === Requests of bounded size, each written as it comes back ===
    pairs = [(os.path.splitext(os.path.basename(p))[0], p) for p in args.images]
    if args.bytes:
        def encoded_size(group):
            total = sum(os.path.getsize(p) for _, p in group)
            return total * 4 // 3 if protocol == "rest" else total  # base64 in JSON takes 4 bytes for 3

        def largest(group):
            # Each photo comes back at its own size, a request's pictures padded to the largest.
            heights_widths = [image_size(p)[::-1] for _, p in group]
            return max(h for h, _ in heights_widths), max(w for _, w in heights_widths)

        for stem, path in pairs:
            one = [(stem, path)]
            if not fits(sizes(1, largest(one), encoded_size(one))):
                raise UserError(_too_big(f"{path}: sent as a file", protocol,
                                         *sizes(1, largest(one), encoded_size(one))))
        for group in _batches(pairs, lambda g: fits(sizes(len(g), largest(g), encoded_size(g)))):
            blobs = []
            for _, path in group:
                with open(path, "rb") as f:
                    blobs.append(f.read())
            finish(send(encoded=blobs), group)
    elif args.size:
        square = (args.size, args.size)
        if not fits(sizes(1, square)):
            raise UserError(_too_big(f"--image-size {args.size}: a photo of {args.size}x{args.size} pixels", protocol,
                                     *sizes(1, square)))
        for group in _batches(pairs, lambda g: fits(sizes(len(g), square))):
            finish(send(images=np.stack([load_image(path, args.size) for _, path in group])), group)
    else:
        # Checked from the headers before any photo is decoded or sent.
        for _, path in pairs:
            width, height = image_size(path)
            if not fits(sizes(1, (height, width))):
                raise UserError(_too_big(f"{path}: {width}x{height} pixels", protocol,
                                         *sizes(1, (height, width))))
        for stem, path in pairs:
            # One request per photo, at its own size, read by the package's one image reader.
            finish(send(images=read_image(path)[None]), [(stem, path)])


def main(argv=None, prog=None):
    cli.main(lambda: run(parse_args(argv, prog)))


if __name__ == "__main__":
    main()
