"""The summary lines every training and evaluation command ends with, and the pictures beside them."""

import dataclasses
import os

import numpy as np
import pytest
from PIL import Image

from keras_cnn import plots, summaries
from keras_cnn.colorization.config import PRESETS as COLOUR_PRESETS
from keras_cnn.segmentation.config import PRESETS as SEGMENT_PRESETS

GREY = {"accuracy": 0.557, "delta_e": 15.49, "psnr": 25.17}
ALL_BACKGROUND = {"class": 0, "fg_iou": 0.0, "mean_iou": 0.36, "pixel_accuracy": 0.72}


def colour_lines(cfg, model):
    return summaries.summary_lines("colorization", cfg, model, GREY, COLOUR_PRESETS, "validation (500 images)")


def test_a_short_colourizer_that_loses_to_its_grey_input_says_so_and_what_a_full_run_reaches():
    # The quick start: the course UNet after 3 of its 25 epochs.
    cfg = dataclasses.replace(COLOUR_PRESETS["cifar10_unet"], source="folder", data_dir="/data", epochs=3)
    lines = colour_lines(cfg, {"loss": 1.5, "accuracy": 0.406, "delta_e": 16.1, "psnr": 21.9})
    assert lines[0] == "validation (500 images): loss 1.5000  accuracy 40.6%  delta E 16.10  PSNR 21.90 dB"
    assert lines[1] == "baseline, the grey input shown as colour: accuracy 55.7%  delta E 15.49  PSNR 25.17 dB"
    assert lines[2] == ("below the grey-input baseline on delta E (16.10 against 15.49), accuracy (40.6% against "
                        "55.7%) and PSNR (21.90 dB against 25.17 dB): a short run (3 of the preset's 25 epochs); a "
                        "full cifar10_unet run beats it on delta E and accuracy and stays below it on PSNR too (a "
                        "wrong colour costs more PSNR than no colour)")
    assert lines[3].startswith("a full cifar10_unet run reaches accuracy 58.3%  delta E 14.21  PSNR 24.04 dB: "
                               "25 epochs, 4.4 min on 2 shared AMD EPYC cores, scored on the 500 held-out horses")
    # The time is measured in docs/BENCHMARKS.md (the figures are in docs/COLORIZATION_RESULTS.md too).
    assert lines[3].endswith("(docs/BENCHMARKS.md)")


def test_a_colourizer_that_beats_its_grey_input_is_told_why_psnr_does_not():
    lines = colour_lines(COLOUR_PRESETS["cifar10_unet"], {"loss": 1.07, "accuracy": 0.58, "delta_e": 14.3,
                                                          "psnr": 24.0})
    assert lines[2] == ("beats the grey-input baseline on delta E (14.30 against 15.49) and accuracy (58.0% against "
                        "55.7%), not on PSNR (24.00 dB against 25.17 dB): a full cifar10_unet run stays below it "
                        "on PSNR too (a wrong colour costs more PSNR than no colour)")
    # Three epochs: better colours than the grey input already, not yet the palette accuracy.
    cfg = dataclasses.replace(COLOUR_PRESETS["cifar10_unet"], epochs=3)
    lines = colour_lines(cfg, {"accuracy": 0.405, "delta_e": 15.25, "psnr": 21.86})
    assert lines[2].startswith("beats the grey-input baseline on delta E (15.25 against 15.49), not on accuracy "
                               "(40.5% against 55.7%) or PSNR (21.86 dB against 25.17 dB): a short run (3 of the "
                               "preset's 25 epochs); a full cifar10_unet run beats it on accuracy and stays below")
    # A preset that loses even after a full run is not called a short run.
    lines = colour_lines(COLOUR_PRESETS["cifar10_cnn2020"], {"delta_e": 16.3, "psnr": 20.0})
    assert lines[2] == ("below the grey-input baseline on delta E (16.30 against 15.49) and PSNR (20.00 dB against "
                        "25.17 dB): a full cifar10_cnn2020 run stays below it on delta E and PSNR too (a wrong "
                        "colour costs more PSNR than no colour)")
    assert lines[3].startswith("a full cifar10_cnn2020 run reaches accuracy 28.0%  delta E 16.34")
    # The same length as the preset's and below where its full run is above: something is wrong.
    lines = colour_lines(COLOUR_PRESETS["cifar10_unet"], {"delta_e": 16.0})
    assert lines[2].endswith("a run as long as its preset's that did not learn: check the data and the learning rate")


def test_runs_are_matched_to_their_preset_by_their_settings():
    resunet = dataclasses.replace(COLOUR_PRESETS["cifar10_resunet"], epochs=2, max_examples=400, seed=3)
    assert summaries.match_preset(resunet, COLOUR_PRESETS) == ("cifar10_resunet", [])
    assert summaries.shortened(resunet, COLOUR_PRESETS["cifar10_resunet"]) == [
        "2 of the preset's 12 epochs", "--max-examples 400"]
    # docs/EXPORT.md's small segmenter: the smoke preset, larger; no full run of it is recorded.
    small = dataclasses.replace(SEGMENT_PRESETS["smoke"], image_size=64, epochs=4, max_examples=120,
                                aspp_channels=32)
    assert summaries.match_preset(small, SEGMENT_PRESETS) == ("smoke", ["image_size", "aspp_channels"])
    lines = summaries.summary_lines("segmentation", small, {"loss": 0.5, "fg_iou": 0.3, "mean_iou": 0.55,
                                                            "pixel_accuracy": 0.8}, ALL_BACKGROUND,
                                    SEGMENT_PRESETS, "validation (62 pairs, best.keras)")
    assert lines[1] == "baseline, all background: foreground IoU 0.000  mean IoU 0.360  pixel accuracy 72.0%"
    assert lines[2] == ("beats the all-background baseline on mean IoU (0.550 against 0.360) and pixel accuracy "
                        "(80.0% against 72.0%); no full run of these settings is recorded (closest preset: smoke, "
                        "with other image_size, aspp_channels)")
    assert lines[3].startswith("a full weizmann_scratch run reaches foreground IoU 0.839")
    # The quick start's segmenter: the pretrained recipe at 160 px; its own full run is the one quoted.
    quick = dataclasses.replace(SEGMENT_PRESETS["effnet_finetune"], image_size=160, epochs=3)
    lines = summaries.summary_lines("segmentation", quick, {"fg_iou": 0.77, "mean_iou": 0.84}, ALL_BACKGROUND,
                                    SEGMENT_PRESETS, "validation")
    assert "closest preset: effnet_finetune, with other image_size" in lines[2]
    assert lines[3].startswith("a full effnet_finetune run reaches foreground IoU 0.905"), lines[3]
    # A time-limited preset cut short.
    scratch = dataclasses.replace(SEGMENT_PRESETS["weizmann_scratch"], time_limit_minutes=2.0)
    lines = summaries.summary_lines("segmentation", scratch, {"mean_iou": 0.3}, ALL_BACKGROUND, SEGMENT_PRESETS,
                                    "validation")
    assert lines[2] == ("below the all-background baseline on mean IoU (0.300 against 0.360): a short run (2 of the "
                        "preset's 26 minutes); a full weizmann_scratch run beats it on mean IoU")


def test_every_recorded_full_run_names_a_preset_and_where_it_was_measured():
    for task, presets in (("colorization", COLOUR_PRESETS), ("segmentation", SEGMENT_PRESETS)):
        assert set(summaries.FULL_RUNS[task]) <= set(presets)
        assert summaries.FALLBACK[task] in summaries.FULL_RUNS[task]
        for run in summaries.FULL_RUNS[task].values():
            assert run.source.startswith("docs/") and os.path.isfile(os.path.join(os.path.dirname(__file__), "..",
                                                                                  run.source))
            assert "cores" in run.run and run.metrics


def test_segmentation_baseline_is_the_most_common_class(tmp_path):
    from keras_cnn.segmentation import data as data_lib
    from keras_cnn.segmentation.evaluate import majority_baseline
    from tests.test_segmentation_data import make_folder

    pairs = data_lib.folder_pairs(make_folder(tmp_path / "data", n=4))
    decode = data_lib.folder_mask_decoder([m for _, m in pairs], 2)
    _, masks = data_lib.load_examples(pairs, decode, (32, 32))
    background = float(np.mean(masks == 0))
    got = majority_baseline(pairs, decode, (32, 32), 2)
    assert got["class"] == 0 and got["fg_iou"] == 0.0
    assert got["pixel_accuracy"] == pytest.approx(background, abs=1e-6)
    assert got["mean_iou"] == pytest.approx(background / 2, abs=1e-6)


def colour_pixels(path, rgb, tolerance=40):
    image = np.asarray(Image.open(path).convert("RGB"), np.int32)
    return int(np.sum(np.all(np.abs(image - np.asarray(rgb)) < tolerance, axis=-1)))


def test_one_epoch_curves_show_their_points(tmp_path):
    path = str(tmp_path / "curves.png")
    plots.history_curves({"loss": [0.9], "val_loss": [1.1]}, path, ("loss",))
    # Matplotlib's first two colours: blue training, orange validation markers.
    assert colour_pixels(path, (31, 119, 180)) > 5 and colour_pixels(path, (255, 127, 14)) > 5


def test_empty_cells_of_activation_grids_are_blank(tmp_path):
    from keras_cnn.colorization.predict import _grid

    # Three flat maps in a 2 x 2 grid: every map is the scale's lowest colour, the fourth cell is empty.
    grid = _grid(np.zeros((6, 6, 3), np.float32))
    assert grid.shape == (13, 13) and np.isnan(grid[7:, 7:]).all() and np.isnan(grid[6]).all()
    path = str(tmp_path / "maps.png")
    plots.feature_grid(grid, path, "three maps")
    assert colour_pixels(path, (253, 231, 37)) == 0  # no viridis yellow: it would read as a strong activation
    assert colour_pixels(path, (68, 1, 84)) > 1000


def test_the_last_line_says_how_long_training_took_and_on_what():
    from keras_cnn import hardware

    line = summaries.wrote_line("runs/x", {"train_seconds_this_session": 31.4})
    assert line == (f"wrote runs/x after 31 s of training on {hardware.cpu_name()} ({hardware.usable_cores()} "
                    "usable cores): every figure is in metrics.json, the curves in plots/curves.png")
