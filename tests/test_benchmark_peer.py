"""The PyTorch peer's wiring without torch: the one-line error, flags, the module import, the tables.

These run in the default CI, which has no torch; the peer itself is tested in
tests/test_torch_peer.py (skipped without torch).
"""

import json
import subprocess
import sys

import pytest

from keras_cnn.benchmarks import peer_torch, report, suite
from keras_cnn.commands import benchmark
from keras_cnn.errors import UserError


def run_command(capsys, *args):
    with pytest.raises(SystemExit) as e:
        benchmark.main(list(args))
    return e.value.code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("flags", [("--peer", "torch"), ("--parts", "peer")])
def test_peer_without_torch_is_one_line_saying_what_to_install(tmp_path, monkeypatch, capsys, flags):
    # None in sys.modules makes `import torch` fail as if it were not installed.
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "triton", None)
    out = tmp_path / "peer.json"
    code, err = run_command(capsys, *flags, "--out", str(out), "--data-root", str(tmp_path))
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("error: --peer torch needs PyTorch and torchvision (")
    assert err[0].endswith("install them with: pip install -e .[bench]")
    assert not out.exists()


def test_bad_peer_flags_are_one_line_errors(tmp_path, capsys):
    out = str(tmp_path / "peer.json")
    code, err = run_command(capsys, "--peer", "torch", "--peer-nets", "unet,vgg", "--out", out)
    assert code == 2 and err == ["error: unknown --peer-nets vgg; choose from: unet, deeplab"]
    code, err = run_command(capsys, "--peer", "jax", "--out", out)
    assert code == 2 and "argument --peer: invalid choice: 'jax'" in err[-1]
    code, err = run_command(capsys, "--peer", "torch", "--peer-rounds", "0", "--out", out)
    assert code == 2 and "--peer-rounds" in err[-1] and "must be >= 1" in err[-1]
    with pytest.raises(UserError, match="unknown --peer 'jax'"):
        suite.run(str(tmp_path), str(tmp_path / "work"), parts=(), peer="jax", log=lambda msg: None)


def test_peer_is_a_part_of_its_own_and_not_a_default_one():
    assert suite.parse_parts("peer") == ("peer",)
    assert suite.parse_parts("peer,quality") == ("quality", "peer")
    assert "peer" not in suite.DEFAULT_PARTS and "peer" not in benchmark.parse_args(["--out", "x.json"]).parts
    assert peer_torch.parse_nets("deeplab, unet") == ("unet", "deeplab")


def test_the_peer_module_imports_without_torch_and_without_tensorflow():
    code = ("import sys; sys.modules['torch'] = sys.modules['torchvision'] = None; "
            "import keras_cnn.benchmarks.peer_torch as p; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'torch') if sys.modules.get(m)), p.FRAMEWORK)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["[]", "torch"]


def peer_result(reached=True):
    rounds = [{"round": 1, "first": "ours", "ours_train_images_per_s": 700.0, "peer_train_images_per_s": 1000.0,
               "train_ratio": 0.7, "ours_infer_images_per_s": 5000.0, "peer_infer_images_per_s": 4000.0,
               "infer_ratio": 1.25, "load_average": 2.0},
              {"round": 2, "first": "peer", "ours_train_images_per_s": 800.0, "peer_train_images_per_s": 1000.0,
               "train_ratio": 0.8, "ours_infer_images_per_s": 5000.0, "peer_infer_images_per_s": 5000.0,
               "infer_ratio": 1.0, "load_average": 2.1}]
    net = {"name": "course UNet (cifar10_unet)", "batch": 100, "params_ours": 56856, "params_peer": 56856,
           "rounds": rounds, "ours_train_images_per_s": 750.0, "peer_train_images_per_s": 1000.0,
           "train_ratio": 0.75, "ours_infer_images_per_s": 5000.0, "peer_infer_images_per_s": 4500.0,
           "infer_ratio": 1.125, "ours_peak_rss_mib": 900.0, "peer_peak_rss_mib": 600.0, "memory_ratio": 1.5}
    epochs = [{"epoch": 1, "ours_train_minutes": 0.2, "ours_delta_e": 15.0, "peer_train_minutes": 0.1,
               "peer_delta_e": 15.2},
              {"epoch": 2, "ours_train_minutes": 0.3, "ours_delta_e": 14.4, "peer_train_minutes": 0.2,
               "peer_delta_e": 14.6}]
    quality = {"target_delta_e": 14.5, "epochs": 2, "validation_images": 500, "batch": 100,
               "learning_rate": 0.001, "epochs_rows": epochs, "ours_minutes_to_target": 0.3 if reached else None,
               "peer_minutes_to_target": None, "minutes_ratio": None, "ours_final_delta_e": 14.4,
               "peer_final_delta_e": 14.6, "ours_train_minutes": 0.3, "peer_train_minutes": 0.2}
    return {"framework": "torch", "torch": "2.14.1", "torchvision": "0.29.1", "torch_threads": 2,
            "tf_intra_op_threads": 2, "nets": [net], "time_to_quality": quality}


def test_peer_tables_show_medians_rounds_and_the_race():
    md = report.markdown({"peer": peer_result()})
    assert "### PyTorch peer (torch 2.14.1, torchvision 0.29.1; 2 torch threads, TensorFlow intra-op 2)" in md
    assert ("| course UNet (cifar10_unet) | 100 | 56,856 | 56,856 | 2 | 750.0 | 1000.0 | 0.75 | 5000.0 | 4500.0 "
            "| 1.12 | 900 | 600 | 1.50 |") in md
    assert "| course UNet (cifar10_unet) | 2 | peer | 800.0 | 1000.0 | 0.80 | 5000.0 | 5000.0 | 1.00 | 2.1 |" in md
    assert "| ours | 0.30 min | 14.400 | 0.30 |" in md and "| peer | not reached | 14.600 | 0.20 |" in md
    assert "minutes to delta E 14.5" in md and "Minutes to the target, ours / peer: -." in md
    assert json.loads(json.dumps(peer_result())) == peer_result()  # what suite.write stores is plain JSON


def test_a_run_without_the_peer_has_no_peer_tables():
    assert "PyTorch peer" not in report.markdown({"speed": {"training": []}})
