"""tools/colorization_sweep: it runs the package as it is, on a machine without TensorFlow.

The sweep trains on GPU machines that have Keras and JAX but no TensorFlow.
It imports the package's real modules (no stand-ins) and labels, decodes
and scores with the package's own colour maths in NumPy, so its figures
are the package's.
"""

import importlib.util
import os
import subprocess
import sys

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


# The sweep on a machine without TensorFlow: a JAX process that refuses to import it.
NO_TENSORFLOW = r"""
import importlib.abc, importlib.util, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ImportError("no TensorFlow on this machine")
sys.meta_path.insert(0, Refuse())
import numpy as np
spec = importlib.util.spec_from_file_location("sweep", sys.argv[1])
sweep = importlib.util.module_from_spec(spec)
sys.modules["sweep"] = sweep  # its worker pool pickles its functions by module name, as when run as a script
spec.loader.exec_module(sweep)
import keras_cnn.layers
from keras_cnn.colorization import color
from keras_cnn.colorization.palette import Palette
# The package's own modules, not stand-ins.
assert keras_cnn.layers.__file__.endswith("keras_cnn/layers.py"), keras_cnn.layers.__file__
rng = np.random.RandomState(0)
train = {c: rng.randint(0, 256, (4, 16, 16, 3)).astype(np.uint8) for c in sweep.CLASSES}
val = {c: rng.randint(0, 256, (3, 16, 16, 3)).astype(np.uint8) for c in sweep.CLASSES}
palette = rng.uniform(-60, 60, (6, 2)).astype(np.float32)
data = sweep.Data(train, val, {"ab6": palette})
np.testing.assert_array_equal(data.y_val["ab6"], Palette(palette).labels(val["horse"], xp="numpy"))
model = sweep.NETS["unet"](6)
scores = sweep.evaluate(model, data, "ab6")
logits = np.asarray(model.predict(data.x_val, verbose=0))
want = Palette(palette).decode(logits, color.grey(val["horse"], xp="numpy"), "argmax", xp="numpy")
assert abs(scores["argmax"] - sweep.mean_delta_e(val["horse"], np.asarray(want))) < 1e-3, scores
assert not any(name.split(".")[0] == "tensorflow" for name in sys.modules)
print("ok", scores)
"""


def test_the_sweep_runs_the_package_itself_without_tensorflow():
    pytest.importorskip("jax", reason="the sweep's machines run Keras on JAX (pip install -e .[jax])")
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    done = subprocess.run([sys.executable, "-c", NO_TENSORFLOW, os.path.join(SWEEP, "sweep.py")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr[-3000:]


def test_the_sweep_keeps_no_copy_of_the_package():
    names = sorted(os.listdir(SWEEP))
    assert "colour_np.py" not in names
    for name in names:
        if name.endswith(".py"):
            text = open(os.path.join(SWEEP, name)).read()
            assert "sys.modules[" not in text and "types.ModuleType" not in text, name


def test_the_report_prices_stages_at_the_measured_cpu_rates():
    report = _module("report")
    result = {"net": "resunet", "palette": "ab24_horse", "pre": ["all", 5, 2e-3], "finetune": ["horse", 8, 5e-4],
              "params": 1709432, "curve": [{"argmax": 12.5, "annealed": 11.5, "val_loss": 2.5}]}
    (row,) = report.rows([result])
    rate = report.CPU_MS_PER_IMAGE["resunet"]
    assert row["minutes"] == pytest.approx((45000 * 5 + 4500 * 8) * rate / 60000)
    assert row["recipe"] == "every class 5 ep, lr 0.002 then horses 8 ep, lr 0.0005"
    assert "| ResUNet (NF 32) | 1.71 M | ab24_horse |" in report.table([result])
