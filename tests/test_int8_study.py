"""The int8 study (`scripts/int8_study.py`): every row is a real file, checked and timed."""

import numpy as np

from keras_cnn.benchmarks import int8
from keras_cnn.export import servable_for
from keras_cnn.tasks import open_run
from tests.export_helpers import colour_run


def test_int8_study_rows_on_a_colourizer(tmp_path):
    run_dir, _ = colour_run(str(tmp_path), num_filters=4)
    result = int8.study(servable_for(open_run(run_dir)), check_count=4, representative_count=6,
                        more_representative=10, log=lambda *_: None)
    rows = {row["file"]: row for row in result["rows"]}
    for name in ("float32", "float16", "dynamic", "int8 before (uint8 softmax out)", "int8 shipped",
                 "float32 with TRANSPOSE_CONV", "int8 with TRANSPOSE_CONV", "16-bit activations, int8 weights"):
        assert name in rows, sorted(rows)
    assert rows["float32"]["argmax_agreement"] == 1.0 and rows["float32"]["latency_vs_float32"] == 1.0
    # The sub-pixel form is the same maths: the float32 files with and without it decide alike.
    assert rows["float32 with TRANSPOSE_CONV"]["argmax_agreement"] >= 0.999
    for row in rows.values():
        assert 0 <= row["argmax_agreement"] <= 1 and row["latency_ms"] > 0 and np.isfinite(row["delta_e"])
    assert rows["int8 shipped"]["size_vs_float32"] < 1  # a 4-filter net: the colour table is much of the file
    assert "| int8 shipped |" in int8.markdown(result)
