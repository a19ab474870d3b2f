"""The pre-training table and learning curves from `sweep.py`'s results.jsonl.

    python tools/colorization_sweep/report.py tools/colorization_sweep/results_h200.jsonl \
        --plot docs/colorization_pretraining_curves.png

Prints a Markdown table: one row per stage (a stage-1 model is scored on the
horses as it is), with delta E at the last epoch by argmax and by the
annealed mean, and the minutes the stages would take on 2 CPU cores at the
training rates measured with the package (`CPU_MS_PER_IMAGE`).
"""

import argparse
import json

# Milliseconds per training image and epoch, validation included, of the
# package's training command on 2 cores of an Intel Xeon (Sapphire Rapids,
# oneDNN on), TensorFlow 2.21: the ResUNet from its stages' epochs (370-428 s
# for 45,000 images, 41-42 s for 4,500), the course UNet from its second
# epoch on the 4,500 horses (6 s), the wider ResUNets from one epoch on the
# horses, tracing included (79 s and 133 s). docs/COLORIZATION_RESULTS.md
# has the commands.
CPU_MS_PER_IMAGE = {"resunet": 9.0, "unet": 1.3, "resunet48": 17.6, "resunet64": 29.6}
IMAGES = {"all": 45000, "horse": 4500}
NET_NAMES = {"unet": "course UNet", "resunet": "ResUNet (NF 32)", "resunet48": "ResUNet (NF 48)",
             "resunet64": "ResUNet (NF 64)"}


def stage_minutes(net, stage):
    subset, epochs, _ = stage
    return IMAGES[subset] * epochs * CPU_MS_PER_IMAGE[net] / 60000


def describe(stage):
    subset, epochs, lr = stage
    return f"{'every class' if subset == 'all' else 'horses'} {epochs} ep, lr {lr:g}"


def rows(results):
    for r in results:
        net, pre, ft = r["net"], r["pre"], r["finetune"]
        stages = [s for s in (pre, ft) if s]
        minutes = sum(stage_minutes(net, s) for s in stages)
        last = r["curve"][-1]
        yield {"net": net, "palette": r["palette"], "seed": r.get("seed", 0),
               "recipe": " then ".join(describe(s) for s in stages), "minutes": minutes,
               "argmax": last["argmax"], "annealed": last["annealed"], "val_loss": last["val_loss"],
               "params": r["params"]}


def table(results):
    lines = ["| net | parameters | palette | training | minutes on 2 CPU cores | delta E, argmax "
             "| delta E, annealed T=0.7 | val loss |", "|---|---|---|---|---|---|---|---|"]
    for row in rows(results):
        lines.append(f"| {NET_NAMES[row['net']]} | {row['params'] / 1e6:.2f} M | {row['palette']} "
                     f"| {row['recipe']}{'' if row['seed'] == 0 else ', seed ' + str(row['seed'])} "
                     f"| {row['minutes']:.0f} | {row['argmax']:.2f} | {row['annealed']:.2f} "
                     f"| {row['val_loss']:.3f} |")
    return "\n".join(lines)


def plot(results, path):
    """Annealed delta E on the validation horses against CPU minutes, for each net's ab24_horse runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nets = [n for n in NET_NAMES if any(r["net"] == n for r in results)]
    fig, axes = plt.subplots(1, len(nets), figsize=(4.2 * len(nets), 3.6), sharey=True)
    pre_curves = {(r["net"], r["palette"], tuple(r["pre"])): r["curve"]
                  for r in results if r["finetune"] is None}
    for ax, net in zip(axes, nets):
        for r in results:
            if r["net"] != net or r["palette"] != "ab24_horse" or r["finetune"] is None:
                continue
            xs, ys, start = [], [], 0.0
            if r["pre"]:
                pre = pre_curves[(net, r["palette"], tuple(r["pre"]))]
                step = stage_minutes(net, r["pre"]) / len(pre)
                xs += [step * (i + 1) for i in range(len(pre))]
                ys += [c["annealed"] for c in pre]
                start = xs[-1]
            step = stage_minutes(net, r["finetune"]) / len(r["curve"])
            xs += [start + step * (i + 1) for i in range(len(r["curve"]))]
            ys += [c["annealed"] for c in r["curve"]]
            label = (describe(r["pre"]) + " ->\n" if r["pre"] else "") + describe(r["finetune"])
            ax.plot(xs, ys, marker=".", label=label, linestyle="-" if r["pre"] else "--")
        ax.set_title(NET_NAMES[net])
        ax.set_xlabel("minutes on 2 CPU cores")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    axes[0].set_ylabel("delta E, 500 validation horses (annealed)")
    axes[0].set_ylim(11.2, 13.5)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", help="results.jsonl files of sweep.py")
    ap.add_argument("--plot", help="also draw the learning curves into this PNG")
    args = ap.parse_args()
    results = [json.loads(line) for path in args.results for line in open(path) if line.strip()]
    print(table(results))
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
