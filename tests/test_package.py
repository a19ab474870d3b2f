"""The package as pip and Python see it: one version, `--version`, a clean top-level namespace, readable summaries."""

import os
import subprocess
import sys
import tomllib

import pytest

import keras_cnn
from tests.helpers import REPO


def run_python(code):
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_one_version_for_pip_and_python(tmp_path):
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)
    # pyproject.toml reads the version from the package instead of repeating it.
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "keras_cnn.__version__"}
    # What pip reports for the installed package (re-run `pip install --no-deps -e .` after a version bump),
    # asked from outside the checkout, where a stale keras_cnn.egg-info of an older install cannot shadow it.
    done = subprocess.run([sys.executable, "-c", "import importlib.metadata as m; print(m.version('keras-cnn'))"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.stdout.strip() == keras_cnn.__version__, done.stderr[-1000:]
    assert tuple(map(int, keras_cnn.__version__.split("."))) >= (0, 3, 0)


def test_version_flag_is_instant():
    out = run_python("import sys\nfrom keras_cnn.commands import main\n"
                     "try:\n    main(['--version'])\nexcept SystemExit as e:\n    print('exit', e.code)\n"
                     "print('tensorflow' in sys.modules)")
    assert out.split("\n")[:3] == [f"keras-cnn {keras_cnn.__version__}", "exit 0", "False"]
    done = subprocess.run([sys.executable, "-m", "keras_cnn", "--version"], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert (done.returncode, done.stdout.strip()) == (0, f"keras-cnn {keras_cnn.__version__}")


def test_top_level_namespace_is_the_public_api_and_imports_lazily():
    out = run_python(
        "import sys, keras_cnn\n"
        "public = [n for n in dir(keras_cnn) if not n.startswith('_')]\n"
        "print(public == sorted(keras_cnn.__all__), 'tensorflow' in sys.modules)\n"
        "print(' '.join(public))\n"
        "print(keras_cnn.segmentation.DeepLabV3Segmenter.__module__, keras_cnn.open_run.__module__)\n")
    first, names, modules = out.strip().split("\n")
    assert first == "True False"  # dir() is __all__, and neither import nor dir() loaded TensorFlow
    for name in ("open_run", "read_image", "train", "colorization", "segmentation", "register_keras_objects"):
        assert name in names.split()
    for name in ("importlib", "sys"):
        assert name not in names.split()
    assert modules == "keras_cnn.segmentation.deeplab_v3 keras_cnn.tasks"
    for name in keras_cnn.__all__:
        assert getattr(keras_cnn, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        keras_cnn.nope


def summary_text(model, **kwargs):
    lines = []
    model.summary(print_fn=lambda line, **_: lines.append(line), line_length=200, **kwargs)
    return "\n".join(lines)


def test_summaries_show_the_nested_net_and_backbone():
    from keras_cnn.colorization.colorizer import Colorizer
    from keras_cnn.colorization.models import UNet
    from keras_cnn.segmentation import DeepLabV3Segmenter, make_backbone

    colorizer = Colorizer(UNet(num_filters=8, num_colours=12))
    text = summary_text(colorizer)
    for layer in ("down1 (Conv2D)", "up2 (Conv2DTranspose)", "skip2 (Concatenate)", "final (Conv2D)"):
        assert layer in text
    assert "down1 (Conv2D)" not in summary_text(colorizer, expand_nested=False)

    # A segmenter's backbone is one row (an EfficientNet-Lite0 expanded is about 300 lines); asked for, it opens.
    segmenter = DeepLabV3Segmenter(make_backbone("efficientnet_lite0", 64, 16), 2, aspp_channels=16,
                                   low_level_channels=8)
    text = summary_text(segmenter)
    assert "efficientnet_lite0_backbone_features (Functional)" in text and "classifier (Conv2D)" in text, text
    assert "stem_conv" not in text and len(text.splitlines()) < 60, len(text.splitlines())
    assert len(summary_text(segmenter, expand_nested=True).splitlines()) > 200
