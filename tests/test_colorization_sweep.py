"""tools/colorization_sweep: its NumPy colour code must label, decode and score as the package does.

The sweep trains on machines without TensorFlow, so its figures are only
comparable with the package's if these ports agree with `Palette.labels`,
`Palette.decode` and `colour_errors`.
"""

import importlib.util
import os
import sys

import numpy as np
import pytest

SWEEP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "colorization_sweep")


def _module(name):
    sys.path.insert(0, SWEEP)
    try:
        spec = importlib.util.spec_from_file_location(f"sweep_{name}", os.path.join(SWEEP, f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(SWEEP)


@pytest.fixture(scope="module")
def photos():
    # Smooth colour gradients with noise: many distinct colours, as in photographs.
    rng = np.random.RandomState(0)
    yy, xx = np.mgrid[0:16, 0:16] / 15.0
    base = np.stack([yy, xx, 1 - yy], -1)[None] * rng.uniform(0.3, 1.0, (12, 1, 1, 3))
    return np.clip((base + rng.normal(0, 0.05, base.shape)) * 255, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("k,space", [(8, "ab"), (16, "ab"), (8, "rgb")])
def test_the_numpy_ports_agree_with_the_package(photos, k, space):
    from keras_cnn.colorization.palette import fit_palette

    pack = _module("pack")
    assert pack.check_ports({f"{space}{k}": fit_palette(photos, k, space)}, photos)


def test_a_port_that_drifts_is_caught(photos, monkeypatch):
    from keras_cnn.colorization.palette import fit_palette

    pack = _module("pack")
    original = pack.cn.decode
    monkeypatch.setattr(pack.cn, "decode", lambda *a: np.minimum(original(*a).astype(int) + 2, 255).astype(np.uint8))
    assert not pack.check_ports({"ab8": fit_palette(photos, 8, "ab")}, photos)


def test_the_report_prices_stages_at_the_measured_cpu_rates():
    report = _module("report")
    result = {"net": "resunet", "palette": "ab24_horse", "pre": ["all", 5, 2e-3], "finetune": ["horse", 8, 5e-4],
              "params": 1709432, "curve": [{"argmax": 12.5, "annealed": 11.5, "val_loss": 2.5}]}
    (row,) = report.rows([result])
    rate = report.CPU_MS_PER_IMAGE["resunet"]
    assert row["minutes"] == pytest.approx((45000 * 5 + 4500 * 8) * rate / 60000)
    assert row["recipe"] == "every class 5 ep, lr 0.002 then horses 8 ep, lr 0.0005"
    assert "| ResUNet (NF 32) | 1.71 M | ab24_horse |" in report.table([result])
