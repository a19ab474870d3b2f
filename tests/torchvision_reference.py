"""torchvision's DeepLabV3-ResNet forward pass in NumPy, straight from a state dict.

Written from torchvision's definitions (torchvision/models/resnet.py,
segmentation/deeplabv3.py, segmentation/fcn.py), not from the Keras port:
NCHW-free (one image, `(H, W, C)`), but every op with PyTorch's semantics:
Conv2d with symmetric zero padding and dilation, MaxPool2d padded with -inf,
BatchNorm2d in eval mode, `_make_layer`'s dilation bookkeeping, ASPP with
image pooling, and `F.interpolate(mode="bilinear", align_corners=False)`.
It runs in float64, so it also tells how far float32 Keras is from exact.

`synthetic_state_dict` makes torchvision-named random weights whose
activations stay at the scale of a trained network (see its docstring).
"""

import numpy as np

BN_EPS = 1e-5


def conv(x, w, b=None, stride=1, pad=0, dilation=1):
    """torch Conv2d on one (H, W, Cin) image; w is OIHW as torch stores it.

    Output pixel i reads input row `i * stride + a * dilation - pad` for kernel
    row a; rows outside the image are zero padding and contribute nothing, so
    each tap only adds its in-image part (the same sum, without materialising
    the padding, which for ASPP's dilation 36 would be most of the work).
    """
    cout, cin, kh, kw = w.shape
    h, wd = x.shape[:2]
    h_out = (h + 2 * pad - dilation * (kh - 1) - 1) // stride + 1
    w_out = (wd + 2 * pad - dilation * (kw - 1) - 1) // stride + 1
    out = np.zeros((h_out, w_out, cout))
    taps = np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)))  # (kh, kw, cin, cout)
    for a in range(kh):
        rows = np.arange(h_out) * stride + a * dilation - pad
        keep_r = (rows >= 0) & (rows < h)
        for c in range(kw):
            cols = np.arange(w_out) * stride + c * dilation - pad
            keep_c = (cols >= 0) & (cols < wd)
            if not keep_r.any() or not keep_c.any():
                continue
            patch = x[rows[keep_r]][:, cols[keep_c]]  # a contiguous copy: BLAS below
            out[np.ix_(keep_r, keep_c)] += (patch.reshape(-1, cin) @ taps[a, c]).reshape(
                keep_r.sum(), keep_c.sum(), cout)
    return out if b is None else out + b


def batch_norm(x, sd, prefix):
    mean, var = sd[f"{prefix}.running_mean"], sd[f"{prefix}.running_var"]
    return (x - mean) / np.sqrt(var + BN_EPS) * sd[f"{prefix}.weight"] + sd[f"{prefix}.bias"]


def relu(x):
    return np.maximum(x, 0.0)


def max_pool_3x3_s2_p1(x):
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    h_out, w_out = (xp.shape[0] - 3) // 2 + 1, (xp.shape[1] - 3) // 2 + 1
    return np.max([xp[a:a + 2 * (h_out - 1) + 1:2, c:c + 2 * (w_out - 1) + 1:2]
                   for a in range(3) for c in range(3)], axis=0)


def _source_index(out_size, in_size):
    """torch's area_pixel_compute_source_index for align_corners=False, and the lerp weights."""
    scale = in_size / out_size
    src = np.maximum((np.arange(out_size) + 0.5) * scale - 0.5, 0.0)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, in_size - 1)
    return i0, i1, src - i0


def resize_bilinear(x, height, width):
    r0, r1, ry = _source_index(height, x.shape[0])
    c0, c1, cx = _source_index(width, x.shape[1])
    rows = x[r0] * (1 - ry)[:, None, None] + x[r1] * ry[:, None, None]
    return rows[:, c0] * (1 - cx)[None, :, None] + rows[:, c1] * cx[None, :, None]


def bottleneck(x, sd, p, stride, dilation, has_downsample):
    out = relu(batch_norm(conv(x, sd[f"{p}.conv1.weight"]), sd, f"{p}.bn1"))
    out = relu(batch_norm(conv(out, sd[f"{p}.conv2.weight"], stride=stride, pad=dilation,
                               dilation=dilation), sd, f"{p}.bn2"))
    out = batch_norm(conv(out, sd[f"{p}.conv3.weight"]), sd, f"{p}.bn3")
    identity = x
    if has_downsample:
        identity = batch_norm(conv(x, sd[f"{p}.downsample.0.weight"], stride=stride), sd, f"{p}.downsample.1")
    return relu(out + identity)


def resnet(x, sd, blocks, replace_stride_with_dilation):
    """torchvision ResNet's features; returns (layer3 output, layer4 output)."""
    x = conv(x, sd["backbone.conv1.weight"], stride=2, pad=3)
    x = max_pool_3x3_s2_p1(relu(batch_norm(x, sd, "backbone.bn1")))
    state = {"dilation": 1, "inplanes": 64}
    outputs = []
    for i, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks)):
        stride = 1 if i == 0 else 2
        dilate = i > 0 and replace_stride_with_dilation[i - 1]
        # torchvision's _make_layer, line by line.
        previous_dilation = state["dilation"]
        if dilate:
            state["dilation"] *= stride
            stride = 1
        has_downsample = stride != 1 or state["inplanes"] != planes * 4
        x = bottleneck(x, sd, f"backbone.layer{i + 1}.0", stride, previous_dilation, has_downsample)
        state["inplanes"] = planes * 4
        for b in range(1, n):
            x = bottleneck(x, sd, f"backbone.layer{i + 1}.{b}", 1, state["dilation"], False)
        outputs.append(x)
    return outputs[2], outputs[3]


def deeplabv3(image, sd, depth=50, output_stride=8, rates=(12, 24, 36)):
    """torchvision DeepLabV3 eval forward of one normalised (H, W, 3) image: {"out", "aux"}."""
    blocks = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[depth]
    rswd = {8: (False, True, True), 16: (False, False, True), 32: (False, False, False)}[output_stride]
    sd = {k: np.asarray(v, np.float64) for k, v in sd.items()}
    layer3, x = resnet(np.asarray(image, np.float64), sd, blocks, rswd)
    h = "classifier.0.convs"
    branches = [relu(batch_norm(conv(x, sd[f"{h}.0.0.weight"]), sd, f"{h}.0.1"))]
    for i, rate in enumerate(rates, start=1):
        branches.append(relu(batch_norm(conv(x, sd[f"{h}.{i}.0.weight"], pad=rate, dilation=rate),
                                        sd, f"{h}.{i}.1")))
    pooled = x.mean(axis=(0, 1), keepdims=True)
    pooled = relu(batch_norm(conv(pooled, sd[f"{h}.4.1.weight"]), sd, f"{h}.4.2"))
    branches.append(resize_bilinear(pooled, x.shape[0], x.shape[1]))
    y = np.concatenate(branches, axis=-1)
    y = relu(batch_norm(conv(y, sd["classifier.0.project.0.weight"]), sd, "classifier.0.project.1"))
    y = relu(batch_norm(conv(y, sd["classifier.1.weight"], pad=1), sd, "classifier.2"))
    y = conv(y, sd["classifier.4.weight"], sd["classifier.4.bias"])
    result = {"out": resize_bilinear(y, image.shape[0], image.shape[1])}
    if "aux_classifier.0.weight" in sd:
        a = relu(batch_norm(conv(layer3, sd["aux_classifier.0.weight"], pad=1), sd, "aux_classifier.1"))
        a = conv(a, sd["aux_classifier.4.weight"], sd["aux_classifier.4.bias"])
        result["aux"] = resize_bilinear(a, image.shape[0], image.shape[1])
    return result


def synthetic_state_dict(shapes, seed=0):
    """Random float32 tensors for `{key: shape}` (torchvision's key names), plus BN counters.

    Conv weights are N(0, 1 / fan_in), so activations keep their scale from
    layer to layer even though the BatchNorm statistics are random (not
    measured on the activations, as a trained network's are); BN weight
    U(0.5, 1.5), bias N(0, 0.2), running_mean N(0, 0.2), running_var
    U(0.5, 2), conv biases N(0, 0.1). Every tensor differs from every other,
    so a tensor copied to the wrong place changes the outputs.
    """
    rng = np.random.default_rng(seed)
    sd = {}
    for key, shape in shapes.items():
        if len(shape) == 4:
            value = rng.normal(0, (1.0 / np.prod(shape[1:])) ** 0.5, shape)
        elif key.endswith(".running_var"):
            value = rng.uniform(0.5, 2.0, shape)
        elif key.endswith(".running_mean"):
            value = rng.normal(0, 0.2, shape)
        elif key.endswith(".weight"):
            value = rng.uniform(0.5, 1.5, shape)
        elif key.endswith(".bias"):
            value = rng.normal(0, 0.2 if f"{key[:-5]}.running_var" in shapes else 0.1, shape)
        else:
            raise ValueError(key)
        sd[key] = value.astype(np.float32)
        if key.endswith(".running_var"):
            sd[f"{key[:-len('running_var')]}num_batches_tracked"] = np.array(7, np.int64)
    return sd
