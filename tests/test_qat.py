"""The int8 twin of the course UNet and the quantisation-aware fine-tuning study."""

import numpy as np
import pytest
import tensorflow as tf

from keras_cnn.benchmarks import qat
from keras_cnn.colorization.models import UNet, build_model
from keras_cnn.errors import UserError
from keras_cnn.tasks import open_run
from tests.export_helpers import colour_run
from tests.test_colorization_models import randomize


def test_twin_without_ranges_is_the_float_net():
    net = randomize(UNet(num_filters=4, num_colours=5))
    grey = tf.constant(np.random.RandomState(0).uniform(0, 1, (2, 8, 12, 1)).astype("float32"))
    twin = qat.Int8Twin(net)
    np.testing.assert_allclose(twin.logits(grey), net(grey, training=False), atol=1e-4)
    assert len(twin.variables) == 5 * 2 + 4 * 2  # kernels and biases, BatchNorm gamma and beta


def test_twin_is_for_the_course_unet_only():
    with pytest.raises(UserError, match="course UNet"):
        qat.Int8Twin(build_model("conv_transpose", num_filters=4, num_colours=5))


def test_qat_study_tracks_the_real_int8_file(tmp_path):
    run_dir, _ = colour_run(str(tmp_path), num_filters=4)
    servable = open_run(run_dir).servable()
    lines = []
    result = qat.study(servable, epochs=1, check_count=6, representative_count=8, batch=8, log=lines.append)
    before, after = result["rows"]
    assert (before["epoch"], after["epoch"], len(lines)) == (0, 1, 2)
    for row in (before, after):
        assert 0.0 <= row["argmax_agreement"] <= 1.0 and np.isfinite(row["int8_delta_e"])
        # The simulation decides as the converter's int8 file does, pixel for pixel up to rare ties.
        assert abs(row["twin_agreement"] - row["argmax_agreement"]) <= 0.02, row
    assert np.isfinite(after["train_loss"]) and after["train_seconds"] > 0


def test_qat_study_refuses_annealed_colourizers(tmp_path):
    run_dir, _ = colour_run(str(tmp_path), num_filters=4, decode="annealed")
    with pytest.raises(UserError, match="argmax-decoded"):
        qat.study(open_run(run_dir).servable(), epochs=1)
