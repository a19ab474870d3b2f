"""Running an exported `.tflite` as a phone app would: LiteRT and NumPy, no TensorFlow.

The TFLite graphs take uint8 RGB images (1, S, S, 3) under the signature
"serving_default" and return, by name: "classes" (uint8 (1, S, S), the argmax
class of each pixel), "logits" ((1, S, S, K): float32, or int8 with a scale
and zero point in the int8 file) and, for an argmax colourizer, "colours"
(uint8 RGB (1, S, S, 3)). `metadata.json` beside the file says which are
there and how they are decoded. `decode_colours` is the NumPy twin of
`Palette.decode` on logits (tested equal), for annealed-mean colourizers
whose colours an app computes itself.

A photo of any size goes through a file of fixed size as the Keras side
does it (`keras_cnn.full_size`): `colorize` runs a colourizer on tiles of the
file's input size, each with a border covering the net's receptive field,
and `segment` brings a segmenter's logits for the resized photo back to the
photo's size before the argmax.
"""

import contextlib
import os
import re
import sys
import tempfile
import warnings

import numpy as np

from keras_cnn import full_size
from keras_cnn.colorization import palette_values
from keras_cnn.errors import UserError
from keras_cnn.fileio import read_json
from keras_cnn.hardware import check_threads

# Lines TensorFlow's converter and LiteRT print from C++ straight to stderr, whatever the log levels:
# the quantiser's settings, and the notice that the default XNNPACK delegate is in use.
NATIVE_NOISE = re.compile(r"^(fully_quantize: |INFO: Created TensorFlow Lite XNNPACK delegate|"
                          r"INFO: Initialized TensorFlow Lite runtime)")


@contextlib.contextmanager
def quiet_native_stderr(noise=NATIVE_NOISE):
    """Runs the block with the process's stderr (fd 2) captured; lines matching `noise` are dropped.

    The converter and the interpreter write these from C++, which neither
    TF_CPP_MIN_LOG_LEVEL nor Python's logging reaches. Every other line is
    written to stderr afterwards, so real warnings and errors still show.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", "replace")
            kept = [line for line in text.splitlines() if line.strip() and not noise.match(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr)


def load_interpreter(model, num_threads=None, with_delegates=True):
    """A LiteRT `Interpreter` for a `.tflite` path or its bytes, tensors allocated."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kwargs = {"num_threads": check_threads(num_threads, "num_threads")}
    if not with_delegates:
        # The default XNNPACK delegate swallows ops into one DELEGATE node;
        # listing the model's own ops needs it off.
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    if not isinstance(model, (bytes, bytearray)) and not os.path.isfile(model):
        raise UserError(f"{model}: .tflite file does not exist")
    try:
        with quiet_native_stderr():
            if isinstance(model, (bytes, bytearray)):
                interpreter = Interpreter(model_content=bytes(model), **kwargs)
            else:
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


def dequantize(values, detail):
    """An int8 output as float32: scale * (q - zero_point); float outputs as they are."""
    scale, zero_point = detail["quantization"]
    if np.issubdtype(np.asarray(values).dtype, np.floating) or not scale:
        return np.asarray(values, np.float32)
    return (np.asarray(values, np.float32) - np.float32(zero_point)) * np.float32(scale)


def predict(interpreter, images):
    """uint8 images (N, S, S, 3) -> {output name: (N, ...)}, one image per invoke.

    "logits" come back as float32 (dequantised in the int8 file); "classes"
    and "colours" as the uint8 the graph returns.
    """
    runner = interpreter.get_signature_runner("serving_default")
    (key, inp), = runner.get_input_details().items()
    outs = runner.get_output_details()
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != tuple(inp["shape"][1:]):
        raise UserError(f"TFLite model wants uint8 images of shape (N, {', '.join(map(str, inp['shape'][1:]))}), "
                        f"got {images.dtype} {images.shape}")
    results = {name: [] for name in outs}
    for image in images:
        # A float-input file (the int8 study's 16x8 one) takes the same pixel values as float32.
        got = runner(**{key: image[None].astype(inp["dtype"])})
        for name, value in got.items():
            results[name].append(dequantize(value[0], outs[name]) if name == "logits" else value[0].copy())
    return {name: np.stack(v) for name, v in results.items()}


def softmax(logits):
    z = np.asarray(logits, np.float32)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def predict_probabilities(interpreter, images):
    """uint8 images (N, S, S, 3) -> float32 class probabilities (N, S, S, K): softmax of the logits."""
    return softmax(predict(interpreter, images)["logits"])


def _is_count(value, low=0):
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def metadata_problem(meta):
    """None if `meta` is export metadata whose fields make sense, else what is wrong (NumPy only).

    Checked: the application, the input size, and what each application
    decodes with: a colourizer's palette (`palette_values.problem`), decoding,
    temperature and receptive radius; a segmenter's classes. A segmenter's
    metadata holding a palette is a colourizer's metadata with its
    application changed.
    """
    application = meta.get("application")
    if application not in ("colorization", "segmentation"):
        return f"\"application\" must be \"colorization\" or \"segmentation\", got {str(application)[:40]!r}"
    size = meta.get("input_size")
    if not (isinstance(size, list) and len(size) == 2 and all(_is_count(n, 1) for n in size)):
        return f"\"input_size\" must be two whole numbers >= 1, got {str(size)[:40]}"
    palette = meta.get("palette")
    if application == "segmentation":
        if palette is not None or "decode" in meta:
            return ("says \"segmentation\" but holds a palette and a colour decoding: it is a colourizer's "
                    "metadata")
        if "num_classes" in meta and not _is_count(meta["num_classes"], 2):
            return f"\"num_classes\" must be a whole number >= 2, got {str(meta['num_classes'])[:40]}"
        names = meta.get("class_names")
        if names is not None and not (isinstance(names, list) and len(names) >= 2
                                      and all(isinstance(n, str) for n in names)):
            return "\"class_names\" must be a list of at least 2 names"
        return None
    if not isinstance(palette, dict) or palette.get("space") not in ("rgb", "ab") \
            or not isinstance(palette.get("colours"), list):
        return ("says \"colorization\" but has no palette "
                "(\"palette\": {\"space\": \"rgb\" or \"ab\", \"colours\": [...]})")
    try:
        colours = np.asarray(palette["colours"], dtype=np.float64)
    except (TypeError, ValueError):
        return "\"palette\" \"colours\" must be a list of colours, each a list of numbers"
    if colours.ndim != 2 or colours.shape[1] != (3 if palette["space"] == "rgb" else 2):
        return f"\"palette\" \"colours\" must be (K, {3 if palette['space'] == 'rgb' else 2}) for space " \
               f"{palette['space']!r}, got shape {colours.shape}"
    wrong = palette_values.problem(colours)
    if wrong:
        return wrong
    decode = meta.get("decode", "argmax")
    if decode not in ("argmax", "annealed"):
        return f"\"decode\" must be \"argmax\" or \"annealed\", got {str(decode)[:40]!r}"
    temperature = meta.get("temperature")
    if decode == "annealed" and not (isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
                                     and np.isfinite(temperature) and temperature > 0):
        return f"\"temperature\" must be a finite number > 0, got {str(temperature)[:40]}"
    radius = meta.get("receptive_radius")
    if radius is not None and not _is_count(radius):
        return f"\"receptive_radius\" must be a whole number of pixels >= 0 or null, got {str(radius)[:40]}"
    return None


def read_metadata(path):
    """The `metadata.json` written beside the `.tflite` files, its fields checked (`metadata_problem`)."""
    meta = read_json(path, "export metadata")
    if not isinstance(meta, dict):
        raise UserError(f"{path}: not a keras_cnn export metadata file (not a JSON object)")
    problem = metadata_problem(meta)
    if problem:
        raise UserError(f"{path}: not usable export metadata: {problem}; pass --metadata of the export "
                        "this model came from")
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
    outputs = interpreter.get_signature_runner("serving_default").get_output_details() \
        if "serving_default" in interpreter.get_signature_list() else {}
    # Files of the first release return probabilities only; newer ones name their class scores "logits".
    out = (outputs.get("logits") or next(iter(outputs.values()), None)
           or interpreter.get_output_details()[0])["shape"]
    size = meta.get("input_size")
    classes = metadata_classes(meta)
    problems = []
    # Only a colourizer's graph decodes colours; a segmenter's metadata on it would write a "mask" of them.
    if "colours" in outputs and meta.get("application") != "colorization":
        problems.append("the model is a colourizer (it outputs colours), the metadata says "
                        f"{meta.get('application')}")
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


def read_photo(path):
    """A photo file as uint8 RGB (H, W, 3), with a one-line error when it does not exist."""
    from keras_cnn.fileio import read_image

    if not os.path.isfile(path):
        raise UserError(f"{path}: image file does not exist")
    return read_image(path)


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


def decode_colours(logits, images_uint8, metadata):
    """Logits (N, H, W, K) -> uint8 RGB with the palette in `metadata`, as `Palette.decode`."""
    palette = metadata["palette"]
    colours = np.asarray(palette["colours"], np.float32)
    z = np.asarray(logits, np.float32)
    if metadata.get("decode", "argmax") == "argmax":
        weights = np.eye(len(colours), dtype=np.float32)[np.argmax(z, axis=-1)]
    else:
        weights = softmax(z / np.float32(metadata["temperature"]))
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


def decode_mask(logits):
    """Logits or probabilities (N, H, W, K) -> uint8 class indices (N, H, W) (the graph's "classes")."""
    return np.argmax(logits, axis=-1).astype(np.uint8)


def tile_border(interpreter, metadata):
    """The border of real photo each tile of a colourizer file is run with.

    The receptive radius the export measured on the Keras model (metadata
    "receptive_radius"), on the 4-pixel grid and at most what leaves a core;
    a quarter of the input size for nets that see the whole image or for
    metadata without the field.
    """
    return full_size.halo(metadata.get("receptive_radius"), window=input_size(interpreter)[0])


def colorize(interpreter, image, metadata):
    """One uint8 RGB photo (H, W, 3) of any size -> colourized uint8 RGB (H, W, 3), as `colorize` gives it.

    The file's fixed S x S input takes the photo in tiles (`full_size`):
    each core of S - 2 * border pixels a side is run inside its S x S view
    and only the core is kept, so every pixel sees the photo around it as far
    as the net looks (`tile_border`). The colours are the graph's "colours",
    or the palette decoding of its "logits" for an annealed-mean colourizer.
    """
    image = np.asarray(image, np.uint8)
    height, width = input_size(interpreter)
    if height != width:
        raise UserError(f"a colourizer's TFLite file takes square images, this one {height}x{width}")

    def run(view, core):
        out = predict(interpreter, view)
        if "colours" in out:
            return out["colours"][:, core[0], core[1]]
        return decode_colours(out["logits"][:, core[0], core[1]], view[:, core[0], core[1]], metadata)

    return full_size.run_tiled(run, image[None], None, tile_border(interpreter, metadata), window=height)[0]


def segment(interpreter, image):
    """One uint8 RGB photo (H, W, 3) -> uint8 class labels (H, W) at the photo's own size, as `segment` gives them.

    The photo is resized to the file's input size (bilinear, as
    `load_photo` fits it), and the logits are resized back to the photo
    bilinearly before the argmax (`full_size.labels_at_size`).
    """
    from PIL import Image

    image = np.asarray(image, np.uint8)
    height, width = input_size(interpreter)
    with Image.fromarray(image) as im:
        fitted = np.asarray(im.resize((width, height), Image.Resampling.BILINEAR), np.uint8)
    logits = predict(interpreter, fitted[None])["logits"][0]
    return full_size.labels_at_size(logits, image.shape[0], image.shape[1])
