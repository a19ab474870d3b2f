"""Running an exported `.tflite` as a phone app would: LiteRT and NumPy, no TensorFlow.

The TFLite graphs take uint8 RGB images (1, S, S, 3) and return class
probabilities (float32, or uint8 with a scale in the int8 variant); the app
decodes them with the `metadata.json` written beside the `.tflite` file:
palette colours for a colourizer, class indices for a segmenter.
`decode_colours` is the NumPy twin of `Palette.decode` (tested equal), so a
phone port has a reference to follow.
"""

import os
import warnings

import numpy as np

from keras_cnn.errors import UserError
from keras_cnn.fileio import read_json


def load_interpreter(model, num_threads=None, with_delegates=True):
    """A LiteRT `Interpreter` for a `.tflite` path or its bytes, tensors allocated."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kwargs = {"num_threads": num_threads}
    if not with_delegates:
        # The default XNNPACK delegate swallows ops into one DELEGATE node;
        # listing the model's own ops needs it off.
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        if isinstance(model, (bytes, bytearray)):
            interpreter = Interpreter(model_content=bytes(model), **kwargs)
        else:
            if not os.path.isfile(model):
                raise UserError(f"{model}: .tflite file does not exist")
            interpreter = Interpreter(model_path=os.fspath(model), **kwargs)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        where = model if isinstance(model, str) else "TFLite model"
        raise UserError(f"{where}: not a loadable TFLite model ({str(e).strip().splitlines()[0][:200]})") \
            from None
    return interpreter


def op_names(model):
    """The sorted operator names of a `.tflite` model (path or bytes)."""
    interpreter = load_interpreter(model, with_delegates=False)
    return sorted({op["op_name"] for op in interpreter._get_ops_details()})


def input_size(interpreter):
    """(height, width) of the model's fixed image input."""
    shape = interpreter.get_input_details()[0]["shape"]
    return int(shape[1]), int(shape[2])


def predict_probabilities(interpreter, images):
    """uint8 images (N, S, S, 3) -> float32 probabilities (N, S, S, K), one image per invoke."""
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != tuple(inp["shape"][1:]):
        raise UserError(f"TFLite model wants uint8 images of shape (N, {', '.join(map(str, inp['shape'][1:]))}), "
                        f"got {images.dtype} {images.shape}")
    results = []
    for image in images:
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        raw = interpreter.get_tensor(out["index"])[0]
        scale, zero_point = out["quantization"]
        if out["dtype"] != np.float32:
            raw = (raw.astype(np.float32) - zero_point) * np.float32(scale)
        results.append(raw.astype(np.float32))
    return np.stack(results)


def read_metadata(path):
    """The `metadata.json` written beside the `.tflite` files."""
    meta = read_json(path, "export metadata")
    if not isinstance(meta, dict) or meta.get("application") not in ("colorization", "segmentation"):
        raise UserError(f"{path}: not a keras_cnn export metadata file")
    return meta


def metadata_classes(meta):
    """The number of output classes `meta` describes (palette colours, or segmenter classes)."""
    if meta.get("application") == "colorization":
        colours = (meta.get("palette") or {}).get("colours")
        return len(colours) if isinstance(colours, list) else None
    if isinstance(meta.get("num_classes"), int):
        return meta["num_classes"]
    names = meta.get("class_names")
    return len(names) if isinstance(names, list) else None


def check_metadata(interpreter, meta, model_path="TFLite model", metadata_path="metadata.json"):
    """A `UserError` unless `meta` describes this interpreter's model (input size, output classes).

    A `.tflite` decoded with another model's metadata gives silent garbage
    (a wrong palette, a mask of the wrong classes), so the shapes are compared
    before anything is run. Returns a warning (or None) when the shapes agree
    but the metadata lists other file names (another export of the same shapes,
    or a renamed file).
    """
    inp = interpreter.get_input_details()[0]["shape"]
    out = interpreter.get_output_details()[0]["shape"]
    size = meta.get("input_size")
    classes = metadata_classes(meta)
    problems = []
    if not (isinstance(size, list) and len(size) == 2) or len(inp) != 4 or [int(inp[1]), int(inp[2])] != size:
        said = "x".join(map(str, size)) if isinstance(size, list) else repr(size)
        problems.append(f"the model takes {'x'.join(str(int(d)) for d in inp[1:3])} images, the metadata says {said}")
    if classes is None or len(out) != 4 or int(out[-1]) != classes:
        problems.append(f"the model predicts {int(out[-1])} classes, the metadata describes {classes}")
    listed = sorted((meta.get("tflite") or {}).values()) if isinstance(meta.get("tflite"), dict) else []
    name = os.path.basename(model_path) if isinstance(model_path, str) else None
    if problems:
        hint = f" (it lists {', '.join(listed)})" if listed and name not in listed else ""
        raise UserError(f"{metadata_path}: does not describe {model_path}: {'; '.join(problems)}{hint}; "
                        "pass --metadata of the export this model came from")
    if listed and name and name not in listed:
        return (f"{metadata_path} lists {', '.join(listed)}, not {name}: make sure it is the metadata of "
                "the export this model came from")
    return None


def load_photo(path, size, fit):
    """A photo as uint8 (size, size, 3) the way the export's `image_fit` says, and its original (h, w)."""
    from PIL import Image

    from keras_cnn.data.cifar10 import load_image
    from keras_cnn.fileio import read_image

    if not os.path.isfile(path):
        raise UserError(f"{path}: image file does not exist")
    image = read_image(path)
    original = image.shape[:2]
    if fit == "stretch":
        with Image.fromarray(image) as im:
            return np.asarray(im.resize((size, size), Image.Resampling.BILINEAR), np.uint8), original
    return load_image(path, size), original


def decode_colours(probabilities, images_uint8, metadata):
    """Probabilities (N, H, W, K) -> uint8 RGB with the palette in `metadata`, as `Palette.decode`."""
    palette = metadata["palette"]
    colours = np.asarray(palette["colours"], np.float32)
    p = np.asarray(probabilities, np.float32)
    if metadata.get("decode", "argmax") == "argmax":
        weights = np.eye(len(colours), dtype=np.float32)[np.argmax(p, axis=-1)]
    else:
        # softmax(log p / T); an int8 model can return exact zeros.
        z = np.log(np.maximum(p, 1e-30)) / np.float32(metadata["temperature"])
        z = np.exp(z - z.max(axis=-1, keepdims=True))
        weights = z / z.sum(axis=-1, keepdims=True)
    mixed = weights @ colours
    if palette["space"] == "rgb":
        rgb = mixed * np.float32(256.0 / 255.0)
    else:
        from skimage.color import lab2rgb, rgb2lab

        grey = np.asarray(images_uint8, np.float32).mean(axis=-1, keepdims=True) / 256.0
        lightness = rgb2lab(np.repeat(grey * 256.0 / 255.0, 3, axis=-1))[..., :1]
        with warnings.catch_warnings():
            # Out-of-gamut colours are clipped, as `color.lab_to_rgb` does silently.
            warnings.simplefilter("ignore", UserWarning)
            rgb = lab2rgb(np.concatenate([lightness, mixed], axis=-1))
    return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def decode_mask(probabilities):
    """Probabilities (N, H, W, K) -> uint8 class indices (N, H, W)."""
    return np.argmax(probabilities, axis=-1).astype(np.uint8)
