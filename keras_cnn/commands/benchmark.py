r"""Measure quality and speed: colourizers, their exports, and the segmenter; print tables, write JSON.

    keras-cnn benchmark --quick --out benchmarks_out/quick.json     # 3.1 min on 2 quiet AMD EPYC cores
    keras-cnn benchmark --out benchmarks_out/full.json \
        --strip docs/colorization_strip.png                               # what docs/BENCHMARKS.md quotes
    keras-cnn benchmark --parts quality --presets cifar10_unet,cifar10_resunet \
        --out benchmarks_out/unet_vs_resunet.json
    keras-cnn benchmark --parts peer --peer torch --out benchmarks_out/peer.json   # ours vs PyTorch

Parts: quality (each colourization preset trained on
../shared/data/cifar10-horse-train, 90/10 split, seed 0, scored beside the
trivial baselines), speed (training images/s of each net, the tf.data pipeline
alone, Keras / SavedModel / TFLite inference), segmentation (the
weizmann_scratch DeepLabV3 on ../shared/data/weizmann-horses, trained and
timed), profile (where a training step of the course UNet and of the segmenter
spends its time, per op type, from TensorFlow's profiler; only when asked
for). Runs, exports and plots go to --work-dir, which must not hold earlier
benchmark runs unless --reuse is given. The tables are also written beside the
JSON as a .md file. The first line says when and on which CPU it started, the
last how long it took and how much --work-dir holds; --quick removes its work
folder at the end (its one-epoch runs are worth nothing) unless --keep-work,
--work-dir or --reuse is given.

--peer torch adds the PyTorch peer (docs/BENCHMARKS.md, "PyTorch peer") to
the chosen parts; --parts peer runs it alone. It trains the course UNet and
DeepLabV3-ResNet-50 in PyTorch beside ours, alternating in rounds, and
needs torch and torchvision (pip install -e .[bench]).
"""

import os
import shutil
import time

from keras_cnn import cli


def parse_args(argv=None, prog=None):
    parser = cli.ArgumentParser(__doc__, prog=prog)
    parser.add_argument("--out", required=True, help="JSON result file (tables go beside it as .md)")
    parser.add_argument("--quick", action="store_true",
                        help="one short epoch on a few hundred images per preset, short timings")
    parser.add_argument("--parts", default="quality,speed,segmentation",
                        help="comma-separated: quality, speed, segmentation, profile (the TensorFlow profiler's "
                             "time per op type of a training step), peer (default: quality, speed, "
                             "segmentation; --peer torch adds peer)")
    parser.add_argument("--presets", default="",
                        help="comma-separated colourization presets (default: all of them)")
    parser.add_argument("--data-root", default=os.environ.get("KERAS_CNN_SHARED_DATA")
                        or os.path.join("..", "shared", "data"),
                        help="folder holding cifar10-horse-train/ and weizmann-horses/ "
                             "(default: $KERAS_CNN_SHARED_DATA, else ../shared/data from the current folder)")
    parser.add_argument("--work-dir", default=None,
                        help="runs, exports and plots (default: a folder named after --out)")
    parser.add_argument("--reuse", action="store_true",
                        help="take finished runs already in --work-dir instead of training them again")
    parser.add_argument("--keep-work", action="store_true",
                        help="--quick: keep the work folder (runs and exports) instead of removing it at the end")
    parser.add_argument("--strip", default=None,
                        help="PNG of grey / course UNet / ResUNet / truth on validation horses")
    parser.add_argument("--tflite-threads", type=cli.at_least(1), default=None,
                        help="LiteRT interpreter threads (default: the interpreter's own choice)")
    peer = parser.add_argument_group("PyTorch peer (needs torch and torchvision: pip install -e .[bench])")
    peer.add_argument("--peer", choices=("torch",), default=None,
                      help="also measure the same nets in this framework (with --parts peer: only that)")
    peer.add_argument("--peer-rounds", type=cli.at_least(1), default=3,
                      help="ours / peer alternations for each speed figure; the median ratio is reported "
                           "(default 3)")
    peer.add_argument("--peer-nets", default="unet,deeplab",
                      help="comma-separated: unet (course UNet speed, memory, time to quality), deeplab "
                           "(DeepLabV3-ResNet-50 speed and memory) (default: both)")
    peer.add_argument("--peer-epochs", type=cli.at_least(1), default=None,
                      help="epochs of the course-UNet time-to-quality race (default 10; 1 with --quick)")
    peer.add_argument("--quality-target", type=cli.positive_float, default=15.0,
                      help="held-out mean delta E the time-to-quality race times each side to (default 15.0)")
    return parser.parse_args(argv)


def run(args):
    from keras_cnn.fileio import check_output

    # === Checks: before TensorFlow is imported or an hour of work begins ===
    from keras_cnn.hardware import check_threads

    check_threads(args.tflite_threads, "--tflite-threads")
    work_dir = args.work_dir or os.path.splitext(args.out)[0] + "_work"
    check_output(args.out, "--out", "file")
    check_output(os.path.splitext(args.out)[0] + ".md", "--out", "file")
    check_output(work_dir, "--work-dir", "folder")
    if args.strip:
        check_output(args.strip, "--strip", "file")
    # (suite.run checks --data-root, --parts and --presets before any work.)
    from keras_cnn import hardware

    start = time.time()
    kind = "quick benchmark" if args.quick else "benchmark"
    print(f"{kind}: started {time.strftime('%Y-%m-%d %H:%M:%S')} on {hardware.describe()}", flush=True)
    from keras_cnn.benchmarks import peer_torch  # torch-free until asked

    peer_nets = peer_torch.parse_nets(args.peer_nets)
    if args.peer or "peer" in [p.strip() for p in args.parts.split(",")]:
        # torch and torchvision load before TensorFlow (and a missing torch is one line, at once).
        peer_torch.require_torch()

    from keras_cnn.benchmarks import report, suite

    parts = suite.parse_parts(args.parts)
    presets = [p.strip() for p in args.presets.split(",") if p.strip()] or None
    result = suite.run(args.data_root, work_dir, parts, quick=args.quick, presets=presets, reuse=args.reuse,
                       strip_path=args.strip, tflite_threads=args.tflite_threads, peer=args.peer,
                       peer_rounds=args.peer_rounds, peer_epochs=args.peer_epochs,
                       quality_target=args.quality_target, peer_nets=peer_nets)
    result["wall_seconds"] = round(time.time() - start, 1)
    md_path = suite.write(result, args.out)
    print(report.markdown(result))
    size = folder_megabytes(work_dir)
    if args.quick and not (args.keep_work or args.work_dir or args.reuse):
        shutil.rmtree(work_dir, ignore_errors=True)
        left = f"removed {work_dir} ({size:.0f} MB of one-epoch runs and exports; --keep-work keeps it)"
    else:
        left = (f"{work_dir} holds {size:.0f} MB of runs and exports (--reuse takes its finished runs; "
                "delete it when done)")
    print(f"wrote {args.out} and {md_path}; {left}")
    print(f"{kind}: took {_duration(result['wall_seconds'])} on {hardware.cpu_name()} "
          f"({hardware.usable_cores()} usable cores, load average {os.getloadavg()[0]:.1f} at the end)")


def folder_megabytes(path):
    """The size of the files under `path` in MB (0 if it does not exist)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total / 1e6


def _duration(seconds):
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min ({seconds:.0f} s)"


def main(argv=None, prog=None):
    cli.main(lambda: run(parse_args(argv, prog)))


if __name__ == "__main__":
    main()
