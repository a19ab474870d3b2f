"""Pretrained weights from other frameworks, read without their runtimes.

    keras_cnn.weights.torch_checkpoint   PyTorch `.pth` / `.pt` state dicts as
                                         NumPy arrays, through a restricted
                                         unpickler (no torch, no code run).
"""

from keras_cnn.weights.torch_checkpoint import load_torch_state_dict  # noqa: F401
