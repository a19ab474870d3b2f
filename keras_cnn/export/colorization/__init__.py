"""Export adapter of the colourization application.

`adapter` makes a run's `ColorizerServable` (its model, palette and
decoding) and its preset assets; `int8_graph` is the colourizer graph that
int8 keeps exact, and `qat` the quantisation-aware fine-tuning through its
int8 simulation. This file imports nothing, so those modules can import each
other through the package without a circle.
"""
