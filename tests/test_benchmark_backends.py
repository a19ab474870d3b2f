"""The per-backend training-speed table: medians, ranges, ratios to TensorFlow, cells not measured."""

from keras_cnn.benchmarks import backends


def test_table_gives_median_range_and_ratio_to_tensorflow():
    result = {"columns": ["tensorflow", "jax", "torch", backends.PEER], "rows": [
        {"model": "course UNet", "batch": 100,
         "tensorflow": {"median": 1000.0, "min": 950.0, "max": 1050.0, "rounds": [950.0, 1050.0]},
         "jax": {"median": 200.0, "min": 200.0, "max": 200.0, "rounds": [200.0]},
         "torch": None,
         backends.PEER: {"median": 800.0, "min": 700.0, "max": 900.0, "rounds": [700.0, 900.0]}},
    ]}
    lines = backends.table(result).splitlines()
    assert lines[0] == "| model | batch | tensorflow | jax | torch | native PyTorch |"
    assert lines[2] == "| course UNet | 100 | 1000.0 (950.0-1050.0) | 200.0, 0.20x | — | 800.0 (700.0-900.0), 0.80x |"


def test_every_model_names_a_preset_of_its_application():
    from keras_cnn.colorization.config import PRESETS as COLOUR
    from keras_cnn.segmentation.config import PRESETS as SEG

    for name, application, preset, folder, batch, steps in backends.MODELS:
        assert preset in (COLOUR if application == "colorization" else SEG)
        assert batch > 0 and steps > 0
