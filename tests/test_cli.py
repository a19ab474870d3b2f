"""The command-line edge: bad input is one line before any work, --help is instant and shows the preset.

The bad-input table runs every case in one fresh process
(`tests/run_cli_cases.py`), in about a second, and also proves that each
case fails before TensorFlow is imported. A few cases run as real
subprocesses of the documented commands to prove the exit code.
"""

import errno
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from keras_cnn import cli
from keras_cnn.colorization.config import PRESETS as COLOUR_PRESETS
from keras_cnn.colorization.config import ColorizationConfig
from keras_cnn.commands import COMMANDS
from keras_cnn.commands import main as keras_cnn_main
from keras_cnn.config import config_from_args, config_path, resolve, save_config
from keras_cnn.errors import UserError
from keras_cnn.segmentation.config import PRESETS as SEG_PRESETS
from keras_cnn.segmentation.config import SegmentationConfig
from tests.helpers import REPO

# (id, argv of `keras-cnn`, what the one error line must contain). In argv and
# the expected text, {w} is the work folder the fixtures below are made in.
BAD_INPUTS = [
    # --- train-colorization: every config field is checked before anything is written
    ("train-col:epochs-0", ["train-colorization", "--run-dir", "{w}/new", "--epochs", "0"],
     "--epochs must be >= 1, got 0"),
    ("train-col:epochs-negative", ["train-colorization", "--run-dir", "{w}/new", "--epochs", "-3"],
     "--epochs must be >= 1, got -3"),
    ("train-col:epochs-not-int", ["train-colorization", "--run-dir", "{w}/new", "--epochs", "ten"],
     "argument --epochs: invalid int value: 'ten'"),
    ("train-col:batch-0", ["train-colorization", "--run-dir", "{w}/new", "--batch-size", "0"],
     "--batch-size must be >= 1, got 0"),
    ("train-col:lr-nan", ["train-colorization", "--run-dir", "{w}/new", "--learning-rate", "nan"],
     "--learning-rate must be a finite number, got nan"),
    ("train-col:lr-0", ["train-colorization", "--run-dir", "{w}/new", "--learning-rate", "0"],
     "--learning-rate must be > 0, got 0.0"),
    ("train-col:colours-1", ["train-colorization", "--run-dir", "{w}/new", "--num-classes", "1"],
     "--num-classes must be >= 2, got 1"),
    ("train-col:colours-0", ["train-colorization", "--run-dir", "{w}/new", "--num-classes", "0"],
     "--num-classes must be >= 2, got 0"),
    ("train-col:val-fraction-negative", ["train-colorization", "--run-dir", "{w}/new", "--dataset", "folder",
                                         "--data-dir", "{w}/data", "--val-fraction", "-0.1"],
     "--val-fraction must be >= 0, got -0.1"),
    ("train-col:val-fraction-1", ["train-colorization", "--run-dir", "{w}/new", "--val-fraction", "1"],
     "--val-fraction must be < 1, got 1.0"),
    ("train-col:kernel-even", ["train-colorization", "--run-dir", "{w}/new", "--kernel", "4"],
     "--kernel must be odd and >= 3, got 4"),
    ("train-col:temperature-0", ["train-colorization", "--run-dir", "{w}/new", "--temperature", "0"],
     "--temperature must be > 0, got 0.0"),
    ("train-col:max-examples", ["train-colorization", "--run-dir", "{w}/new", "--max-examples", "-1"],
     "--max-examples must be >= 0, got -1"),
    ("train-col:seed", ["train-colorization", "--run-dir", "{w}/new", "--seed", "-1"], "--seed must be >= 0"),
    # Integers past what TensorFlow counts in (32 bits) are a line, not an OverflowError from inside it.
    ("train-col:batch-huge", ["train-colorization", "--run-dir", "{w}/new", "--batch-size", "9" * 23],
     "--batch-size must be <= 2147483647, got " + "9" * 23),
    ("train-col:batch-huge-negative", ["train-colorization", "--run-dir", "{w}/new", "--batch-size", "-" + "9" * 23],
     "--batch-size must be >= -2147483647, got -" + "9" * 23),
    ("train-col:seed-huge", ["train-colorization", "--run-dir", "{w}/new", "--seed", "4294967296"],
     "--seed must be <= 4294967295, got 4294967296"),
    ("train-col:epochs-huge", ["train-colorization", "--run-dir", "{w}/new", "--epochs", "2147483648"],
     "--epochs must be <= 2147483647, got 2147483648"),
    ("train-seg:max-examples-huge", ["train-segmentation", "--run-dir", "{w}/new", "--data-dir", "{w}/data",
                                     "--max-examples", "1" + "0" * 30], "--max-examples must be <= 2147483647"),
    ("train-col:rebalance", ["train-colorization", "--run-dir", "{w}/new", "--class-rebalance", "2"],
     "--class-rebalance must be <= 1, got 2.0"),
    ("train-col:cifar-class", ["train-colorization", "--run-dir", "{w}/new", "--cifar-class", "unicorn"],
     "--cifar-class: unknown CIFAR-10 class 'unicorn'"),
    ("train-col:model", ["train-colorization", "--run-dir", "{w}/new", "--backbone", "vgg"],
     "argument --backbone: invalid choice: 'vgg'"),
    ("train-col:folder-no-data", ["train-colorization", "--run-dir", "{w}/new", "--dataset", "folder"],
     "--dataset folder needs --data-dir"),
    ("train-col:data-missing", ["train-colorization", "--run-dir", "{w}/new", "--dataset", "folder",
                                "--data-dir", "{w}/nope"], "--data-dir {w}/nope: no such folder"),
    ("train-col:palette-missing", ["train-colorization", "--run-dir", "{w}/new", "--palette", "{w}/p.npy"],
     "--palette {w}/p.npy: no such file"),
    ("train-col:run-dir-is-file", ["train-colorization", "--run-dir", "{w}/file.txt"],
     "--run-dir {w}/file.txt: exists and is not a folder"),
    ("train-col:run-dir-under-file", ["train-colorization", "--run-dir", "{w}/file.txt/run"],
     "--run-dir {w}/file.txt/run: {w}/file.txt is a file, not a folder"),
    ("train-col:unknown-flag", ["train-colorization", "--run-dir", "{w}/new", "--bogus", "1"],
     "unrecognized arguments: --bogus 1"),
    ("train-col:resume-epochs", ["train-colorization", "--run-dir", "{w}/run_colour", "--resume", "--epochs", "7"],
     "--resume continues the run with its saved config, but these flags would change it: --epochs 7 (saved: 3)"),
    ("train-col:resume-model", ["train-colorization", "--run-dir", "{w}/run_colour", "--resume",
                                "--backbone", "resunet", "--batch-size", "8"],
     "--batch-size 8 (saved: 4), --backbone 'resunet' (saved: 'unet')"),
    ("train-col:resume-preset", ["train-colorization", "--run-dir", "{w}/run_colour", "--resume",
                                 "--preset", "cifar10_resunet"], "--preset cifar10_resunet and the flags would"),
    # --resume of nothing says so (it used to ask for --data-dir).
    ("train-col:resume-missing", ["train-colorization", "--run-dir", "{w}/nope", "--resume"],
     "{w}/nope: run folder does not exist, so there is nothing to resume; drop --resume to start a new run"),
    ("train-seg:resume-missing", ["train-segmentation", "--run-dir", "{w}/nope", "--resume"],
     "{w}/nope: run folder does not exist, so there is nothing to resume; drop --resume to start a new run"),
    ("train-seg:resume-missing-with-preset", ["train-segmentation", "--run-dir", "{w}/nope", "--resume",
                                              "--preset", "smoke"], "{w}/nope: run folder does not exist"),
    ("train-col:resume-no-config", ["train-colorization", "--run-dir", "{w}/data", "--resume"],
     "{w}/data: nothing to resume (no config.json); drop --resume to start a new run there"),
    ("train-seg:resume-no-config", ["train-segmentation", "--run-dir", "{w}/data", "--resume"],
     "{w}/data: nothing to resume (no config.json)"),
    ("train-col:resume-config-list", ["train-colorization", "--run-dir", "{w}/run_list", "--resume"],
     "{w}/run_list/config.json: config must be a JSON object, got a list"),
    # --- --resume reads the run folder's state files through one checker: a bad one is one line naming it
    ("train-seg:resume-budget-type", ["train-segmentation", "--run-dir", "{w}/run_budget_type", "--resume"],
     '{w}/run_budget_type/time_budget.json: time budget record "seconds" must be a number of seconds >= 0, '
     'got "ten"; delete it to resume with the time budget counted from 0'),
    ("train-seg:resume-budget-key", ["train-segmentation", "--run-dir", "{w}/run_budget_key", "--resume"],
     '{w}/run_budget_key/time_budget.json: time budget record has no "seconds"'),
    ("train-seg:resume-budget-list", ["train-segmentation", "--run-dir", "{w}/run_budget_list", "--resume"],
     "{w}/run_budget_list/time_budget.json: time budget record must be a JSON object, got a list"),
    ("train-seg:resume-budget-binary", ["train-segmentation", "--run-dir", "{w}/run_budget_binary", "--resume"],
     "{w}/run_budget_binary/time_budget.json: time budget record holds binary bytes (NUL), not text"),
    ("train-seg:resume-budget-cut", ["train-segmentation", "--run-dir", "{w}/run_budget_cut", "--resume"],
     "{w}/run_budget_cut/time_budget.json: time budget record is not valid JSON (Expecting ',' delimiter at "
     "line 1 column 15) (cut short?)"),
    ("train-col:resume-backup-type", ["train-colorization", "--run-dir", "{w}/run_backup_type", "--resume"],
     '{w}/run_backup_type/backup/state.json: backup state "epoch" must be a whole number >= 0, got "two"; '
     "delete {w}/run_backup_type/backup to restart the run from its beginning"),
    ("train-col:resume-backup-path", ["train-colorization", "--run-dir", "{w}/run_backup_path", "--resume"],
     '{w}/run_backup_path/backup/state.json: backup state "weights" must be the name of a file in the same '
     'folder, got "/etc/passwd"'),
    ("train-col:resume-history-binary", ["train-colorization", "--run-dir", "{w}/run_history_binary", "--resume"],
     "{w}/run_history_binary/history.csv: training log holds binary bytes (NUL), not text; move it away"),
    # --- train-segmentation
    ("train-seg:image-size-0", ["train-segmentation", "--run-dir", "{w}/new", "--data-dir", "{w}/data",
                                "--image-size", "0"], "--image-size must be >= 32, got 0"),
    ("train-seg:classes-1", ["train-segmentation", "--run-dir", "{w}/new", "--data-dir", "{w}/data",
                             "--num-classes", "1"], "--num-classes must be >= 2, got 1"),
    ("train-seg:aspp-rates", ["train-segmentation", "--run-dir", "{w}/new", "--data-dir", "{w}/data",
                              "--aspp-rates", "6,x"], "--aspp-rates must be positive integers"),
    ("train-seg:dropout", ["train-segmentation", "--run-dir", "{w}/new", "--data-dir", "{w}/data",
                           "--dropout", "1.5"], "--dropout must be < 1, got 1.5"),
    ("train-seg:batch-negative", ["train-segmentation", "--run-dir", "{w}/new", "--data-dir", "{w}/data",
                                  "--batch-size", "-1"], "--batch-size must be >= 1, got -1"),
    ("train-seg:no-data-dir", ["train-segmentation", "--run-dir", "{w}/new", "--preset", "smoke"],
     "--dataset folder needs --data-dir"),
    ("train-seg:base-model-missing", ["train-segmentation", "--run-dir", "{w}/new", "--data-dir", "{w}/data",
                                      "--base-model", "{w}/base.keras"], "--base-model {w}/base.keras: no such file"),
    ("train-seg:cosine-time", ["train-segmentation", "--preset", "weizmann_scratch", "--run-dir", "{w}/new",
                               "--data-dir", "{w}/data", "--time-limit-minutes", "0"],
     "--lr-schedule cosine_time needs --time-limit-minutes"),
    ("train-seg:backbone", ["train-segmentation", "--run-dir", "{w}/new", "--backbone", "vgg"],
     "argument --backbone: invalid choice: 'vgg'"),
    ("train-seg:resume-batch", ["train-segmentation", "--run-dir", "{w}/run_seg", "--resume", "--batch-size", "64"],
     "--batch-size 64 (saved: 4)"),
    # --- evaluate-colorization: run folders and their config.json
    ("eval-col:batch-0", ["evaluate-colorization", "--run-dir", "{w}/run_colour", "--batch-size", "0"],
     "argument --batch-size: must be >= 1, got 0"),
    ("eval-col:run-missing", ["evaluate-colorization", "--run-dir", "{w}/nope"], "--run-dir {w}/nope: no such folder"),
    ("eval-col:config-list", ["evaluate-colorization", "--run-dir", "{w}/run_list"],
     "{w}/run_list/config.json: config must be a JSON object, got a list"),
    ("eval-col:config-number", ["evaluate-colorization", "--run-dir", "{w}/run_number"],
     "{w}/run_number/config.json: config must be a JSON object, got a number"),
    ("eval-col:config-binary", ["evaluate-colorization", "--run-dir", "{w}/run_binary"],
     "{w}/run_binary/config.json: config holds binary bytes (NUL), not text"),
    ("eval-col:config-not-json", ["evaluate-colorization", "--run-dir", "{w}/run_badjson"],
     "{w}/run_badjson/config.json: config is not valid JSON"),
    ("eval-col:config-wrong-type", ["evaluate-colorization", "--run-dir", "{w}/run_wrongtype"],
     "{w}/run_wrongtype/config.json: --epochs wants int, got 'ten'"),
    ("eval-col:config-bad-value", ["evaluate-colorization", "--run-dir", "{w}/run_badvalue"],
     "{w}/run_badvalue/config.json: --batch-size must be >= 1, got 0"),
    ("eval-col:config-unknown-key", ["evaluate-colorization", "--run-dir", "{w}/run_unknown"],
     "{w}/run_unknown/config.json: unknown config key(s) epochz"),
    ("eval-col:config-missing", ["evaluate-colorization", "--run-dir", "{w}/data"],
     "{w}/data/config.json: cannot read config (No such file or directory)"),
    ("eval-col:out-under-file", ["evaluate-colorization", "--run-dir", "{w}/run_colour",
                                 "--out", "{w}/file.txt/e.json"],
     "--out {w}/file.txt/e.json: {w}/file.txt is a file, not a folder"),
    ("eval-col:activations-is-file", ["evaluate-colorization", "--run-dir", "{w}/run_colour",
                                      "--activations-dir", "{w}/file.txt"],
     "--activations-dir {w}/file.txt: exists and is not a folder"),
    ("eval-col:image-index", ["evaluate-colorization", "--run-dir", "{w}/run_colour", "--image-index", "-1"],
     "argument --image-index: must be >= 0, got -1"),
    # A run of the other application is said to be one (not two dozen "unknown config keys").
    ("eval-col:segmentation-run", ["evaluate-colorization", "--run-dir", "{w}/run_seg_task"],
     "{w}/run_seg_task: this is a segmentation run, not a colorization run; use train-segmentation --resume, "
     "evaluate-segmentation, segment or export with it"),
    ("eval-col:segmentation-run-legacy", ["evaluate-colorization", "--run-dir", "{w}/run_seg"],
     "{w}/run_seg: this is a segmentation run, not a colorization run"),
    ("train-col:resume-segmentation-run", ["train-colorization", "--run-dir", "{w}/run_seg_task", "--resume"],
     "{w}/run_seg_task: this is a segmentation run, not a colorization run"),
    ("train-seg:resume-colour-run", ["train-segmentation", "--run-dir", "{w}/run_colour", "--resume"],
     "{w}/run_colour: this is a colorization run, not a segmentation run; use train-colorization --resume, "
     "evaluate-colorization, colorize or export with it"),
    ("eval-seg:colour-run", ["evaluate-segmentation", "--run-dir", "{w}/run_colour"],
     "{w}/run_colour: this is a colorization run, not a segmentation run"),
    ("colorize:segmentation-run", ["colorize", "--run-dir", "{w}/run_seg_task", "--input", "{w}/img.png",
                                   "--out-dir", "{w}/out"], "{w}/run_seg_task: this is a segmentation run"),
    ("eval-col:no-checkpoint", ["evaluate-colorization", "--run-dir", "{w}/run_colour", "--checkpoint", "last"],
     "--checkpoint last {w}/run_colour/last.keras: no such file"),
    ("colorize:no-checkpoint", ["colorize", "--run-dir", "{w}/run_colour", "--input", "{w}/img.png", "--out-dir",
                                "{w}/out"], "--checkpoint best {w}/run_colour/best.keras: no such file"),
    ("colorize:model-missing", ["colorize", "--model", "{w}/run_colour/m.keras", "--input", "{w}/img.png",
                                "--out-dir", "{w}/out"], "--model {w}/run_colour/m.keras: no such file"),
    ("colorize:nothing", ["colorize", "--input", "{w}/img.png", "--out-dir", "{w}/out"], "pass --run-dir"),
    ("eval-col:batch-huge", ["evaluate-colorization", "--run-dir", "{w}/run_colour", "--batch-size", "9" * 23],
     "argument --batch-size: must be <= 2147483647, got " + "9" * 23),
    ("eval-col:config-batch-huge", ["evaluate-colorization", "--run-dir", "{w}/run_huge"],
     "{w}/run_huge/config.json: --batch-size must be <= 2147483647, got " + "9" * 23),
    ("eval-col:temperature-nan", ["evaluate-colorization", "--run-dir", "{w}/run_colour", "--temperature", "nan"],
     "argument --temperature: must be a finite number > 0, got nan"),
    # --- colorize
    ("colorize:batch-negative", ["colorize", "--run-dir", "{w}/run_colour", "--input", "{w}/img.png",
                                 "--out-dir", "{w}/out", "--batch-size", "-1"],
     "argument --batch-size: must be >= 1, got -1"),
    ("colorize:run-dir-is-file", ["colorize", "--run-dir", "{w}/file.txt", "--input", "{w}/img.png",
                                  "--out-dir", "{w}/out"], "--run-dir {w}/file.txt: not a folder"),
    ("colorize:input-missing", ["colorize", "--run-dir", "{w}/run_colour", "--input", "{w}/nope.jpg",
                                "--out-dir", "{w}/out"], "--input {w}/nope.jpg: no such file or folder"),
    ("colorize:out-dir-is-file", ["colorize", "--run-dir", "{w}/run_colour", "--input", "{w}/img.png",
                                  "--out-dir", "{w}/file.txt"], "--out-dir {w}/file.txt: exists and is not a folder"),
    # --- evaluate-segmentation
    ("eval-seg:nothing", ["evaluate-segmentation"], "pass --run-dir (a training run) or --model (a .keras file)"),
    ("eval-seg:model-missing", ["evaluate-segmentation", "--model", "{w}/m.keras", "--data-dir", "{w}/data"],
     "--model {w}/m.keras: no such file"),
    ("eval-seg:override-val-fraction", ["evaluate-segmentation", "--run-dir", "{w}/run_seg", "--val-fraction", "1"],
     "--val-fraction must be < 1, got 1.0"),
    ("eval-seg:no-checkpoint", ["evaluate-segmentation", "--run-dir", "{w}/run_seg"],
     "--checkpoint best {w}/run_seg/best.keras: no such file"),
    ("eval-seg:out-is-folder", ["evaluate-segmentation", "--run-dir", "{w}/run_seg_done", "--out", "{w}/data"],
     "--out {w}/data: is a folder, not a file"),
    # --- segment
    ("convert-torchvision:weights-missing", ["convert-torchvision", "--weights", "{w}/none.pth", "--out",
                                             "{w}/m.keras"], "--weights {w}/none.pth: no such file"),
    ("convert-torchvision:size", ["convert-torchvision", "--weights", "{w}/none.pth", "--out", "{w}/m.keras",
                                  "--image-size", "8"], "--image-size: must be >= 32, got 8"),
    ("segment:nothing", ["segment", "--input", "{w}/img.png", "--out-dir", "{w}/out"], "pass --model"),
    ("segment:model-missing", ["segment", "--model", "{w}/m.keras", "--input", "{w}/img.png", "--out-dir", "{w}/out"],
     "--model {w}/m.keras: no such file"),
    ("segment:input-missing", ["segment", "--model", "{w}/run_export/best.keras", "--input", "{w}/img.png",
                               "{w}/nope.png", "--out-dir", "{w}/out"], "--input {w}/nope.png: no such file or folder"),
    ("segment:out-under-file", ["segment", "--model", "{w}/run_export/best.keras", "--input", "{w}/img.png",
                                "--out-dir", "{w}/file.txt/out"], "--out-dir {w}/file.txt/out: {w}/file.txt is a file"),
    # --- segmentation-summary
    ("summary:image-size", ["segmentation-summary", "--image-size", "8"],
     "argument --image-size: must be >= 32, got 8"),
    ("summary:backbone", ["segmentation-summary", "--backbones", "vgg"], "argument --backbones: invalid choice"),
    ("summary:output-stride", ["segmentation-summary", "--output-stride", "4"],
     "argument --output-stride: invalid choice: 4"),
    # --- export
    ("export:run-missing", ["export", "--run-dir", "{w}/nope"], "--run-dir {w}/nope: no such folder"),
    ("export:no-config", ["export", "--run-dir", "{w}/data"], "--run-dir {w}/data/config.json: no such file"),
    ("export:version-huge", ["export", "--run-dir", "{w}/run_export", "--version", "9" * 20],
     "argument --version: must be <= 2147483647"),
    ("export:version-0", ["export", "--run-dir", "{w}/run_export", "--version", "0"],
     "argument --version: must be >= 1, got 0"),
    ("export:formats", ["export", "--run-dir", "{w}/run_export", "--out", "{w}/exports", "--formats", "onnx"],
     "unknown export format(s) onnx"),
    ("export:name", ["export", "--run-dir", "{w}/run_export", "--out", "{w}/exports", "--name", "../up"],
     "model name '../up' must be"),
    ("export:out-is-file", ["export", "--run-dir", "{w}/run_export", "--out", "{w}/file.txt"],
     "--out {w}/file.txt: exists and is not a folder"),
    ("export:counts", ["export", "--run-dir", "{w}/run_export", "--representative-count", "0"],
     "argument --representative-count: must be >= 1, got 0"),
    # --- int8-study
    ("int8:run-missing", ["int8-study", "--run-dir", "{w}/nope", "--out", "{w}/study.json"],
     "--run-dir {w}/nope: no such folder"),
    ("int8:out-is-folder", ["int8-study", "--run-dir", "{w}/run_export", "--out", "{w}/data"],
     "--out {w}/data: is a folder, not a file"),
    ("int8:threads-0", ["int8-study", "--run-dir", "{w}/run_export", "--out", "{w}/study.json", "--threads", "0"],
     "argument --threads: must be >= 1, got 0"),
    # --- finetune-int8
    ("finetune:run-missing", ["finetune-int8", "--run-dir", "{w}/nope", "--out-dir", "{w}/new"],
     "--run-dir {w}/nope: no such folder"),
    ("finetune:out-exists", ["finetune-int8", "--run-dir", "{w}/run_export", "--out-dir", "{w}/data"],
     "--out-dir {w}/data: already exists; the fine-tuned run goes into a new folder"),
    ("finetune:no-checkpoint", ["finetune-int8", "--run-dir", "{w}/run_colour", "--out-dir", "{w}/new"],
     "--checkpoint best {w}/run_colour/best.keras: no such file"),
    ("finetune:segmenter", ["finetune-int8", "--run-dir", "{w}/run_seg_done", "--out-dir", "{w}/new"],
     "--run-dir {w}/run_seg_done: a segmentation run; int8 fine-tuning is for colourizers"),
    ("finetune:data-moved", ["finetune-int8", "--run-dir", "{w}/run_export", "--out-dir", "{w}/new",
                             "--data-dir", "{w}/gone"], "--data-dir {w}/gone: no such folder"),
    ("finetune:consistency", ["finetune-int8", "--run-dir", "{w}/run_export", "--out-dir", "{w}/new",
                              "--consistency", "-1"], "argument --consistency: must be a finite number >= 0, got -1"),
    # --- serving-client
    ("client:url-port", ["serving-client", "--rest", "http://localhost:abc", "--model", "m", "--out-dir", "{w}/out",
                         "--input", "{w}/img.png"], "--rest http://localhost:abc: not a URL"),
    ("client:url-scheme", ["serving-client", "--rest", "ftp://localhost", "--model", "m", "--out-dir", "{w}/out",
                           "--input", "{w}/img.png"], "--rest ftp://localhost: not an http(s) URL"),
    ("client:grpc-address", ["serving-client", "--grpc", "localhost", "--model", "m", "--out-dir", "{w}/out",
                             "--input", "{w}/img.png"], "--grpc localhost: not HOST:PORT"),
    ("client:image-missing", ["serving-client", "--rest", "http://localhost:8501", "--model", "m", "--out-dir",
                              "{w}/out", "--input", "{w}/nope.png"], "image {w}/nope.png: no such file"),
    ("client:not-an-image", ["serving-client", "--rest", "http://localhost:8501", "--model", "m", "--out-dir",
                             "{w}/out", "--input", "{w}/fake.jpg"], "{w}/fake.jpg: cannot be decoded as an image"),
    ("client:size-0", ["serving-client", "--rest", "http://localhost:8501", "--model", "m", "--out-dir",
                       "{w}/out", "--image-size", "0", "--input", "{w}/img.png"],
     "argument --image-size: must be >= 1, got 0"),
    ("client:timeout", ["serving-client", "--rest", "http://localhost:8501", "--model", "m", "--out-dir",
                        "{w}/out", "--timeout", "-1", "--input", "{w}/img.png"],
     "argument --timeout: must be a finite number > 0"),
    ("client:two-servers", ["serving-client", "--rest", "http://localhost:8501", "--grpc", "localhost:8500",
                            "--model", "m", "--out-dir", "{w}/out", "--input", "{w}/img.png"],
     "not allowed with argument"),
    ("client:out-is-file", ["serving-client", "--rest", "http://localhost:8501", "--model", "m", "--out-dir",
                            "{w}/file.txt", "--input", "{w}/img.png"],
     "--out-dir {w}/file.txt: exists and is not a folder"),
    # (The server's signature is asked for first, over REST without TensorFlow; port 9 is closed here.)
    ("client:unreachable", ["serving-client", "--rest", "http://127.0.0.1:9", "--model", "m", "--out-dir", "{w}/out",
                            "--timeout", "5", "--input", "{w}/img.png"],
     "cannot reach TF Serving at http://127.0.0.1:9/v1/models/m/metadata"),
    # --- tflite-predict
    ("tflite:model-missing", ["tflite-predict", "--model", "{w}/m.tflite", "--input", "{w}/img.png",
                              "--out-dir", "{w}/o"], "--model {w}/m.tflite: no such file"),
    ("tflite:metadata-missing", ["tflite-predict", "--model", "{w}/model.tflite", "--input", "{w}/img.png",
                                 "--out-dir", "{w}/o"], "--metadata {w}/metadata.json: no such file"),
    ("tflite:out-under-file", ["tflite-predict", "--model", "{w}/model.tflite", "--input", "{w}/img.png",
                               "--metadata", "{w}/file.txt", "--out-dir", "{w}/file.txt/o"],
     "--out-dir {w}/file.txt/o: {w}/file.txt is a file"),
    ("tflite:threads-0", ["tflite-predict", "--model", "{w}/model.tflite", "--input", "{w}/img.png",
                          "--out-dir", "{w}/o", "--threads", "0"], "argument --threads: must be >= 1, got 0"),
    # --- benchmark: outputs checked before an hour of work
    ("benchmark:out-under-file", ["benchmark", "--quick", "--out", "{w}/file.txt/quick.json"],
     "--out {w}/file.txt/quick.json: {w}/file.txt is a file, not a folder"),
    ("benchmark:out-is-folder", ["benchmark", "--out", "{w}/data"], "--out {w}/data: is a folder, not a file"),
    ("benchmark:work-dir-is-file", ["benchmark", "--out", "{w}/b.json", "--work-dir", "{w}/file.txt"],
     "--work-dir {w}/file.txt: exists and is not a folder"),
    ("benchmark:strip-under-file", ["benchmark", "--out", "{w}/b.json", "--strip", "{w}/file.txt/s.png"],
     "--strip {w}/file.txt/s.png: {w}/file.txt is a file"),
    ("benchmark:threads", ["benchmark", "--out", "{w}/b.json", "--tflite-threads", "0"],
     "argument --tflite-threads: must be >= 1, got 0"),
    # --- benchmark-distribute
    ("bench-dist:out-under-file", ["benchmark-distribute", "--out", "{w}/file.txt/d.json"],
     "--out {w}/file.txt/d.json: {w}/file.txt is a file"),
    ("bench-dist:steps-0", ["benchmark-distribute", "--out", "{w}/d.json", "--steps", "0"],
     "argument --steps: must be >= 1, got 0"),
    ("bench-dist:repeats", ["benchmark-distribute", "--out", "{w}/d.json", "--repeats", "-1"],
     "argument --repeats: must be >= 1, got -1"),
    ("bench-dist:task", ["benchmark-distribute", "--out", "{w}/d.json", "--task", "detection"],
     "argument --task: invalid choice: 'detection'"),
    # --- the keras-cnn command itself
    ("keras-cnn:unknown-command", ["train"], "unknown command 'train'; choose one of: train-colorization"),
]


def make_fixtures(w):
    """The files and folders the cases point at; nothing a case may add to."""
    (w / "file.txt").write_text("a plain file\n")
    (w / "data").mkdir()
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(w / "img.png")
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(w / "data" / "0000.png")
    (w / "fake.jpg").write_text("not an image")
    (w / "model.tflite").write_bytes(b"not really a model")
    colour = resolve(ColorizationConfig, COLOUR_PRESETS, "cifar10_unet",
                     {"source": "folder", "data_dir": str(w / "data"), "epochs": 3, "batch_size": 4})
    seg = resolve(SegmentationConfig, SEG_PRESETS, "smoke", {"data_dir": str(w / "data")})
    # *_done runs hold a best.keras stand-in: no case gets as far as loading it.
    for name, cfg in (("run_colour", colour), ("run_export", colour), ("run_seg", seg), ("run_seg_done", seg)):
        (w / name).mkdir()
        save_config(cfg, config_path(w / name))
    for name in ("run_export", "run_seg_done"):
        (w / name / "best.keras").write_bytes(b"a stand-in; never loaded")
    # Runs with one bad state file each (the --resume cases).
    state = {"run_budget_type": ("time_budget.json", b'{"seconds": "ten"}'),
             "run_budget_key": ("time_budget.json", b'{"minutes": 3}'),
             "run_budget_list": ("time_budget.json", b"[60]"),
             "run_budget_binary": ("time_budget.json", b"\x00\x01\x02\xff"),
             "run_budget_cut": ("time_budget.json", b'{"seconds": 12'),
             "run_backup_type": ("backup/state.json", b'{"epoch": "two", "step": 0, "weights": "w.h5"}'),
             "run_backup_path": ("backup/state.json", b'{"epoch": 1, "step": 0, "weights": "/etc/passwd"}'),
             "run_history_binary": ("history.csv", b"epoch,loss\n0,\x00\x00")}
    for name, (file, content) in state.items():
        (w / name / "backup").mkdir(parents=True)
        save_config(seg if "budget" in name else colour, config_path(w / name),
                    task="segmentation" if "budget" in name else "colorization")
        (w / name / file).write_bytes(content)
    (w / "run_seg_task").mkdir()
    save_config(seg, config_path(w / "run_seg_task"), task="segmentation")
    (w / "run_binary").mkdir()
    (w / "run_binary" / "config.json").write_bytes(b"PK\x03\x04\x00\x00binary")
    for name, text in (("run_list", "[1, 2]"), ("run_number", "3"), ("run_badjson", "{not json"),
                       ("run_wrongtype", '{"epochs": "ten"}'), ("run_badvalue", '{"batch_size": 0}'),
                       ("run_unknown", '{"epochz": 1}'), ("run_huge", '{"batch_size": %s}' % ("9" * 23))):
        (w / name).mkdir()
        (w / name / "config.json").write_text(text)


@pytest.fixture(scope="module")
def table_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    w = root / "w"
    w.mkdir()
    make_fixtures(w)
    cases = [{"id": cid, "argv": [a.format(w=w) for a in argv]} for cid, argv, _ in BAD_INPUTS]
    (root / "cases.json").write_text(json.dumps(cases))
    proc = subprocess.run([sys.executable, "-m", "tests.run_cli_cases", str(root / "cases.json"),
                           str(root / "results.json"), str(w)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return w, json.loads((root / "results.json").read_text())


def test_the_table_is_big_enough():
    assert len(BAD_INPUTS) >= 40 and len({cid for cid, _, _ in BAD_INPUTS}) == len(BAD_INPUTS)
    # Every command has cases.
    assert {argv[0] for _, argv, _ in BAD_INPUTS if argv[0] in COMMANDS} == set(COMMANDS)


@pytest.mark.parametrize("cid,expected", [(cid, expected) for cid, _, expected in BAD_INPUTS],
                         ids=[cid for cid, _, _ in BAD_INPUTS])
def test_bad_input_is_one_line_before_any_work(table_results, cid, expected):
    w, results = table_results
    r = results[cid]
    assert r["code"] == 2, r
    assert "Traceback" not in r["stderr"]
    lines = r["stderr"].splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r["stderr"]
    assert expected.format(w=w) in lines[0]
    assert r["created"] == [], "a failed command left files behind"
    assert not r["tensorflow_imported"], "the case imported TensorFlow before failing"


def run(*argv, env=None, cwd=REPO):
    return subprocess.run([sys.executable, *map(str, argv)], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120)


def test_exit_codes_of_the_real_commands(tmp_path):
    """The documented script, `python -m keras_cnn` and the console script all exit 2 with one line."""
    proc = run(os.path.join(REPO, "scripts", "train_colorization.py"), "--run-dir", tmp_path / "r", "--epochs", "0")
    assert (proc.returncode, proc.stderr) == (2, "error: --epochs must be >= 1, got 0\n")
    proc = run("-m", "keras_cnn", "colorize", "--run-dir", tmp_path, "--input", tmp_path, "--out-dir",
               tmp_path / "o", "--batch-size", "0")
    assert proc.returncode == 2 and proc.stderr.startswith("error: argument --batch-size: must be >= 1, got 0")
    assert len(proc.stderr.splitlines()) == 1
    console = os.path.join(os.path.dirname(sys.executable), "keras-cnn")
    if os.path.exists(console):  # the entry point pip install -e . makes
        (tmp_path / "f").write_text("a file")
        proc = subprocess.run([console, "benchmark", "--out", str(tmp_path / "f" / "x.json")],
                              capture_output=True, text=True, timeout=60)
        assert (proc.returncode, proc.stderr) == (2, f"error: --out {tmp_path / 'f' / 'x.json'}: "
                                                     f"{tmp_path / 'f'} is a file, not a folder\n")
    assert not (tmp_path / "r").exists() and not (tmp_path / "o").exists()


def test_debug_shows_the_traceback_and_keeps_the_exit_code(tmp_path):
    env = dict(os.environ, KERAS_CNN_DEBUG="1")
    proc = run("-m", "keras_cnn", "train-colorization", "--run-dir", tmp_path / "r", "--epochs", "0", env=env)
    assert proc.returncode == 2 and "Traceback" in proc.stderr
    assert proc.stderr.splitlines()[-1] == "error: --epochs must be >= 1, got 0"


FREE_SPACE = "free some space there, or write somewhere else, and run the command again"


def failing(exc):
    def fn():
        raise exc
    return fn


@pytest.mark.parametrize("exc,line", [
    (UserError("--x: bad\nreally"), "error: --x: bad really"),
    (FileNotFoundError(2, "No such file or directory", "/no/such"), "error: /no/such: No such file or directory"),
    (PermissionError(13, "Permission denied", "/root/x"), "error: /root/x: Permission denied"),
    (json.JSONDecodeError("Expecting value", "x", 0), "error: not valid JSON (Expecting value at line 1 column 1)"),
    (MemoryError(), "error: out of memory; try smaller images, or free some memory"),
    # A full disk is not "out of memory", and says which file did not fit.
    (OSError(errno.ENOSPC, "No space left on device", "/runs/a/last.keras"),
     "error: /runs/a/last.keras: no space left on device; " + FREE_SPACE),
    (OSError(errno.EDQUOT, "Disk quota exceeded", "/home/u/runs/a"),
     "error: /home/u/runs/a: disk quota exceeded; " + FREE_SPACE),
    (OSError(None, "Can't write data (file write failed: errno = 28, error message = 'No space left on "
                   "device')", "/runs/a/backup/w.h5"), "error: /runs/a/backup/w.h5: no space left on device; "
                                                        + FREE_SPACE),
])
def test_expected_failures_become_one_line(capsys, exc, line):
    with pytest.raises(SystemExit) as e:
        cli.main(failing(exc))
    assert e.value.code == 2 and capsys.readouterr().err == line + "\n"


def test_image_errors_and_interrupts(capsys, tmp_path):
    from PIL import UnidentifiedImageError

    (tmp_path / "x.png").write_text("text")
    with pytest.raises(SystemExit) as e:
        cli.main(lambda: Image.open(tmp_path / "x.png"))
    assert e.value.code == 2
    assert capsys.readouterr().err == f"error: cannot identify image file '{tmp_path / 'x.png'}'\n"
    assert issubclass(UnidentifiedImageError, OSError)  # (so it is an expected failure twice over)
    with pytest.raises(SystemExit) as e:
        cli.main(failing(KeyboardInterrupt()))
    assert e.value.code == 130 and capsys.readouterr().err == "error: interrupted\n"
    from keras_cnn.errors import TrainingInterrupted

    with pytest.raises(SystemExit) as e:
        cli.main(failing(TrainingInterrupted(15, "runs/x: training stopped by SIGTERM at epoch 2, step 3")))
    assert e.value.code == 143
    assert capsys.readouterr().err == "error: runs/x: training stopped by SIGTERM at epoch 2, step 3\n"
    # A bug is not an expected failure: it keeps its traceback.
    with pytest.raises(ZeroDivisionError):
        cli.main(lambda: 1 / 0)


def test_user_error_is_a_value_error():
    assert issubclass(UserError, ValueError)


def test_every_preset_is_valid():
    for name in COLOUR_PRESETS:  # the class-tree presets read --data-dir
        resolve(ColorizationConfig, COLOUR_PRESETS, name, {"data_dir": "somewhere"})
    for name in SEG_PRESETS:
        resolve(SegmentationConfig, SEG_PRESETS, name, {"data_dir": "somewhere"})


def test_resume_accepts_the_original_command(tmp_path):
    from keras_cnn.commands import train_colorization as command

    data = tmp_path / "data"
    data.mkdir()
    flags = ["--preset", "cifar10_resunet", "--dataset", "folder", "--data-dir", str(data), "--epochs", "3"]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    saved = resolve(ColorizationConfig, COLOUR_PRESETS, "cifar10_resunet",
                    {"source": "folder", "data_dir": str(data), "epochs": 3})
    save_config(saved, config_path(run_dir))
    for extra in ([], flags, ["--epochs", "3"]):
        args = command.parse_args(["--run-dir", str(run_dir), "--resume", *extra])
        assert config_from_args(args, ColorizationConfig, COLOUR_PRESETS, command.DEFAULT_PRESET) == saved
    # Without --resume the flags describe a new run.
    args = command.parse_args(["--run-dir", str(tmp_path / "new"), *flags[:2]])
    assert config_from_args(args, ColorizationConfig, COLOUR_PRESETS, command.DEFAULT_PRESET).model == "resunet"


def help_text(command, *argv, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "200")  # argparse wraps at the terminal width
    with pytest.raises(SystemExit) as e:
        keras_cnn_main([command, *argv, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


def test_help_shows_the_chosen_presets_values(monkeypatch, capsys):
    text = help_text("train-segmentation", "--preset", "weizmann_scratch", monkeypatch=monkeypatch, capsys=capsys)
    assert re.search(r"--epochs INT +\(weizmann_scratch: 300\)", text)
    assert ("--backbone {resnet50,resnet101,mobilenetv2,efficientnet_lite0,efficientnet_lite1,efficientnet_lite2,"
            "small_resnet,tiny}") in text
    assert "(weizmann_scratch: 'small_resnet')" in text
    assert ("--preset {effnet_finetune,flowers17_deeplabv3,flowers17_imagenet,smoke,weizmann_effnet,"
            "weizmann_effnet_decoder,weizmann_scratch}") in text
    assert "--lr-schedule {constant,cosine,cosine_time}" in text
    text = help_text("train-segmentation", "--preset", "smoke", monkeypatch=monkeypatch, capsys=capsys)
    assert re.search(r"--epochs INT +\(smoke: 1\)", text) and "(smoke: 'tiny')" in text
    text = help_text("train-colorization", monkeypatch=monkeypatch, capsys=capsys)
    assert "--backbone {pool_upsample,conv_transpose,unet,cnn2020,resunet,effnet_unet}" in text
    assert "--upsample {1,2,4}" in text
    assert re.search(r"--epochs INT +\(cifar10_unet: 25\)", text)
    text = help_text("train-colorization", "--preset=cifar10_resunet", monkeypatch=monkeypatch, capsys=capsys)
    assert re.search(r"--epochs INT +\(cifar10_resunet: 12\)", text) and "(cifar10_resunet: 'resunet')" in text
    # Evaluation shows its own flags and the data flags, not training's.
    text = help_text("evaluate-segmentation", "--preset", "smoke", monkeypatch=monkeypatch, capsys=capsys)
    assert "--data-dir" in text and "--epochs" not in text and "(smoke:" not in text


def imported_modules(importtime_stderr):
    """Module names from `python -X importtime` output."""
    return {line.rsplit("|", 1)[-1].strip() for line in importtime_stderr.splitlines()
            if line.startswith("import time:")}


@pytest.mark.parametrize("module", ["", *COMMANDS.values()])
def test_help_is_instant_and_does_not_import_tensorflow(module):
    if module:
        proc = run("-X", "importtime", os.path.join(REPO, "scripts", f"{module}.py"), "--help")
    else:
        proc = run("-X", "importtime", "-m", "keras_cnn", "--help")
    assert proc.returncode == 0 and proc.stdout.startswith("usage: "), proc.stderr[-2000:]
    heavy = {m for m in imported_modules(proc.stderr) if m.split(".")[0] in ("tensorflow", "keras", "PIL")}
    assert not heavy, sorted(heavy)[:5]


def test_tensorflow_import_is_silenced_at_the_file_descriptor(tmp_path):
    """TensorFlow's pre-logging notices go straight to fd 2; only its first import is silenced."""
    fake = tmp_path / "tensorflow"
    fake.mkdir()
    (fake / "__init__.py").write_text("import os\nos.write(2, b'notice from a shared library\\n')\nVALUE = 7\n")
    code = ("import os, sys; sys.path.insert(0, sys.argv[1]); from keras_cnn import cli; cli.quiet_tensorflow(); "
            "import tensorflow; import tensorflow as again; print(again.VALUE, tensorflow.__spec__.origin); "
            "os.write(2, b'later message\\n')")
    env = {k: v for k, v in os.environ.items() if k != "KERAS_CNN_DEBUG"}
    proc = run("-c", code, tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["7", str(fake / "__init__.py")]
    assert proc.stderr == "later message\n"
    bad = tmp_path / "bad"
    (bad / "tensorflow").mkdir(parents=True)
    (bad / "tensorflow" / "__init__.py").write_text("raise ImportError('broken build')\n")
    proc = run("-c", code, bad, env=env)
    assert proc.returncode == 1 and "ImportError: broken build" in proc.stderr


def test_start_up_prints_nothing_from_tensorflow():
    # Not from the test session's environment: the command must quieten TensorFlow itself.
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS")}
    proc = run(os.path.join(REPO, "scripts", "segmentation_summary.py"), "--backbones", "tiny", "--image-size",
               "32", "--output-stride", "8", env=env)
    assert proc.returncode == 0 and "tiny" in proc.stdout
    assert proc.stderr == ""
