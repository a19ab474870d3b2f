"""keras_cnn.benchmarks.distribute: which cases run where, rows from real subprocess runs, the table."""

import pytest

from keras_cnn.benchmarks import distribute as bench


def test_cases_follow_the_devices():
    names = lambda cases: sorted({(c["strategy"], c["logical_cpus"]) for c in cases})  # noqa: E731
    assert names(bench.available_cases(num_gpus=0)) == [("default", 0), ("mirrored", 2), ("one_device", 0)]
    assert names(bench.available_cases(num_gpus=0, logical_cpus=0)) == [("default", 0), ("one_device", 0)]
    assert names(bench.available_cases(num_gpus=1)) == [("default", 0), ("one_device", 0)]
    assert names(bench.available_cases(num_gpus=4)) == [("default", 0), ("mirrored", 0), ("one_device", 0)]
    # Every strategy with precision and XLA off and on.
    assert len(bench.available_cases(num_gpus=4)) == 12


def test_rows_ratios_and_failed_cases(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    rows = bench.run([bench.case("default"), bench.case("multi_worker")], batch_size=4, image_size=16,
                     steps=2, warmup=1, log=lambda *_: None)
    ok, failed = rows
    assert ok["error"] is None and ok["images_per_s"] > 0 and ok["ratio"] == 1.0
    assert (ok["replicas"], ok["global_batch"], ok["precision"]) == (1, 4, "float32")
    # A case that cannot run is a row saying why, and the others still run.
    assert failed["error"] == ("UserError: --strategy multi_worker needs TF_CONFIG naming a cluster of 2 "
                               "or more tasks")
    assert failed["ratio"] is None
    table = bench.markdown(rows).splitlines()
    assert table[0].startswith("| strategy | replicas | precision | XLA | global batch | images/s |")
    assert table[2].startswith("| default | 1 | float32 | off | 4 |")
    assert table[3].endswith("| UserError: --strategy multi_worker needs TF_CONFIG naming a cluster of 2 or "
                             "more tasks |")


def test_error_message_drops_tensorflow_dumps():
    e = ValueError("Graph execution error:\n\nDetected at node x defined at (most recent call last):\n"
                   "  File \"a.py\", line 1\n\nTrying to access resource v (defined @ /k/core.py:43) "
                   "located in device CPU:1 from device CPU:0\n Cf. https://x\n\t [[{{node y}}]]")
    assert bench.error_message(e) == ("ValueError: Trying to access resource v located in device CPU:1 "
                                      "from device CPU:0")


def test_unknown_task():
    with pytest.raises(ValueError, match="unknown task"):
        bench.measure(bench.case(), task="detection")
