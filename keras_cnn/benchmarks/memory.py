"""Peak memory (RSS) of colourizing or segmenting one big photo, for docs/RELIABILITY.md.

    python -m keras_cnn.benchmarks.memory colorize --size 4000            # tiled (the default)
    python -m keras_cnn.benchmarks.memory colorize --size 4000 --tile 0   # one whole-image pass
    python -m keras_cnn.benchmarks.memory segment --size 4000

Writes a synthetic JPEG photo of SIZE x SIZE pixels, then, in a fresh process
(so nothing of the photo's making counts), builds the model (the
cifar10_unet colourizer, or the weizmann_scratch segmenter, randomly
initialised: the memory does not depend on the weights), warms it up on a
small photo, and runs the same code as `scripts/colorize.py` /
`scripts/segment.py` on the big one. Prints one JSON line: the peak RSS of
the process (`getrusage` ru_maxrss) and its RSS after set-up, in MiB.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def _rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def write_photo(path, size, seed=0):
    """A SIZE x SIZE JPEG of smooth colour fields and noise, made in row bands (little memory)."""
    import numpy as np
    from PIL import Image

    rng = np.random.RandomState(seed)
    im = Image.new("RGB", (size, size))
    for top in range(0, size, 256):
        rows = min(256, size - top)
        yy, xx = np.mgrid[top:top + rows, :size].astype(np.float32)
        band = np.stack([120 + 100 * np.sin(xx / 97.0 + c) * np.cos(yy / 71.0 - c) for c in range(3)], axis=-1)
        band += rng.normal(0, 6, band.shape)
        im.paste(Image.fromarray(np.clip(band, 0, 255).astype(np.uint8)), (0, top))
    im.save(path, quality=90)


def _child(job, photo, out_dir, tile):
    import numpy as np

    if job == "colorize":
        import keras

        from keras_cnn.colorization import predict
        from keras_cnn.colorization.colorizer import Colorizer
        from keras_cnn.colorization.config import PRESETS
        from keras_cnn.colorization.models import build_model
        from keras_cnn.colorization.palette import Palette

        cfg = PRESETS["cifar10_unet"]
        keras.utils.set_random_seed(0)
        model = Colorizer(build_model(cfg.model, kernel=cfg.kernel, num_filters=cfg.num_filters,
                                      num_colours=cfg.num_colours))
        palette = Palette(np.random.RandomState(0).rand(cfg.num_colours, 3) * 0.9)
        predict.colorize(model, palette, np.zeros((1, 64, 64, 3), np.uint8))
        predict.tile_halo(model)

        def run():
            return predict.colorize_files(model, palette, photo, out_dir, tile_size=tile or None)
        what = f"cifar10_unet colourizer, tile {tile or 'none (one pass)'}"
    else:
        from keras_cnn.segmentation import predict
        from keras_cnn.segmentation.config import PRESETS
        from keras_cnn.segmentation.deeplab_v3 import build_segmenter

        model = build_segmenter(PRESETS["weizmann_scratch"])
        predict.predict_labels(model, np.zeros((64, 64, 3), np.uint8))

        def run():
            return predict.segment_paths(model, [photo], out_dir)
        what = "weizmann_scratch segmenter (160 px input)"
    before = _rss_mib()
    start = time.time()
    written = run()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"job": job, "model": what, "photo": os.path.basename(photo), "written": len(written),
                      "rss_after_setup_mib": round(before), "peak_rss_mib": round(peak),
                      "seconds": round(time.time() - start, 1)}), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job", choices=("colorize", "segment", "_child"))
    parser.add_argument("--size", type=int, default=4000, help="photo side in pixels (default 4000)")
    parser.add_argument("--tile", type=int, default=512, help="colourizer tile side; 0: one whole-image pass")
    parser.add_argument("--photo", help=argparse.SUPPRESS)
    parser.add_argument("--child-job", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.job == "_child":
        _child(args.child_job, args.photo, os.path.dirname(args.photo), args.tile)
        return
    with tempfile.TemporaryDirectory(prefix="keras_cnn_memory_") as tmp:
        photo = os.path.join(tmp, f"photo_{args.size}.jpg")
        write_photo(photo, args.size)
        subprocess.run([sys.executable, "-m", "keras_cnn.benchmarks.memory", "_child", "--child-job", args.job,
                        "--photo", photo, "--tile", str(args.tile)], check=True)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
