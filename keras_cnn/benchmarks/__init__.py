"""Measured quality and speed of the package's models (`scripts/benchmark.py`).

- `colorization`: each colourizer preset trained and scored, baselines, the comparison strip, training speed.
- `segmentation`: the DeepLabV3 preset on an image/mask folder, trained and timed.
- `inference`: Keras, SavedModel and TFLite inference of a run, after `keras_cnn.export`.
- `peer_torch`: the same nets in plain PyTorch beside ours (`--peer torch`; `torch_nets` holds the
  PyTorch nets and is imported only when torch is installed).
- `timing`: how every figure is timed; `report`: the Markdown tables; `suite`: all of it in one run.
"""
