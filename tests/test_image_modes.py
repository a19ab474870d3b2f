"""The one image reader and the image modes a photo can come in: 16-bit, 32-bit and float files are scaled.

`keras_cnn.fileio.read_image` feeds training, `colorize`, `segment`,
`tflite_predict`, export calibration and `serving_client`, so each row here
holds for all of them. Files are written by Pillow, except 16-bit colour PNGs,
which Pillow reads but cannot write (made here with zlib, as the PNG
specification lays them out).
"""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from keras_cnn.errors import UserError
from keras_cnn.fileio import read_image

RAMP16 = (np.arange(48 * 64).reshape(48, 64) * 21).astype(np.uint16)  # 0 .. 64491


def png16(array, colour_type):
    """A 16-bit PNG (colour type 2: RGB, 6: RGBA) of a uint16 array (H, W, C)."""
    height, width = array.shape[:2]
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def pil_file(array, fmt, mode=None):
    def write(path):
        Image.fromarray(array, mode).save(path, format=fmt)
    return write


def raw_file(data):
    def write(path):
        with open(path, "wb") as f:
            f.write(data)
    return write


RGB16 = np.stack([RAMP16, RAMP16 // 2, 65535 - RAMP16], -1)
INT32_WIDE = (np.arange(48 * 64).reshape(48, 64) * 1000 - 700_000).astype(np.int32)
FLOAT_UNIT = np.linspace(0, 1, 48 * 64, dtype=np.float32).reshape(48, 64)
FLOAT_BYTE = np.linspace(0, 255, 48 * 64, dtype=np.float32).reshape(48, 64)
FLOAT_WIDE = np.linspace(-40, 900, 48 * 64, dtype=np.float32).reshape(48, 64)
FLOAT_HIGH = np.linspace(300, 900, 48 * 64, dtype=np.float32).reshape(48, 64)
INT32_HIGH = (np.arange(48 * 64).reshape(48, 64) * 300 + 70_000).astype(np.int32)


def grey(values):
    return np.repeat(np.asarray(values, np.uint8)[..., None], 3, -1)


def min_max(values):
    values = values.astype(np.float64)
    return np.rint((values - values.min()) * 255 / (values.max() - values.min()))


# (id, file writer, file suffix, the uint8 RGB read_image must return). 16-bit values become their
# high byte, as Pillow reads 16-bit colour PNGs, so grey and colour files of one picture agree.
MODES = [
    ("grey-8bit-png", pil_file((RAMP16 >> 8).astype(np.uint8), "PNG"), ".png", grey(RAMP16 >> 8)),
    ("grey-16bit-png", pil_file(RAMP16, "PNG"), ".png", grey(RAMP16 >> 8)),
    ("grey-16bit-png-full-range", pil_file(np.array([[0, 255, 256, 65535]], np.uint16), "PNG"), ".png",
     grey([[0, 0, 1, 255]])),
    ("grey-16bit-tiff", pil_file(RAMP16, "TIFF"), ".tiff", grey(RAMP16 >> 8)),
    ("rgb-16bit-png", raw_file(png16(RGB16, 2)), ".png", (RGB16 >> 8).astype(np.uint8)),
    ("rgba-16bit-png", raw_file(png16(np.concatenate([RGB16, RAMP16[..., None]], -1), 6)), ".png",
     (RGB16 >> 8).astype(np.uint8)),
    ("int32-tiff-16bit-values", pil_file(RAMP16.astype(np.int32), "TIFF"), ".tiff", grey(RAMP16 >> 8)),
    ("int32-tiff-wide-values", pil_file(INT32_WIDE, "TIFF"), ".tiff",
     grey((INT32_WIDE.astype(np.int64) + 700_000) * 255 // (INT32_WIDE.max() + 700_000))),
    ("int32-tiff-high-values", pil_file(INT32_HIGH, "TIFF"), ".tiff",
     grey((INT32_HIGH.astype(np.int64) - 70_000) * 255 // (INT32_HIGH.max() - 70_000))),
    ("float-tiff-0-to-1", pil_file(FLOAT_UNIT, "TIFF"), ".tiff", grey(np.rint(FLOAT_UNIT * 255.0))),
    ("float-tiff-0-to-255", pil_file(FLOAT_BYTE, "TIFF"), ".tiff", grey(np.rint(FLOAT_BYTE))),
    ("float-tiff-other-range", pil_file(FLOAT_WIDE, "TIFF"), ".tiff", grey(min_max(FLOAT_WIDE))),
    ("float-tiff-high-range", pil_file(FLOAT_HIGH, "TIFF"), ".tiff", grey(min_max(FLOAT_HIGH))),
]


@pytest.mark.parametrize("writer,suffix,want", [row[1:] for row in MODES], ids=[row[0] for row in MODES])
def test_every_mode_is_read_as_8bit_rgb_scaled_not_clipped(tmp_path, writer, suffix, want):
    path = tmp_path / f"photo{suffix}"
    writer(path)
    got = read_image(path)
    assert got.dtype == np.uint8 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    # One grey level: the same scaling, one channel.
    assert read_image(path, mode="L").shape == want.shape[:2]


def test_a_16bit_grey_photo_is_not_white(tmp_path):
    """The case a user met: a 16-bit scan colourized as all white."""
    path = tmp_path / "scan.png"
    Image.fromarray(np.full((16, 16), 30000, np.uint16)).save(path)
    assert np.all(read_image(path) == 30000 >> 8)


def test_non_finite_float_images_are_one_line_naming_the_file(tmp_path):
    values = FLOAT_UNIT.copy()
    values[3, 4] = np.nan
    path = tmp_path / "nan.tiff"
    Image.fromarray(values).save(path)
    with pytest.raises(UserError, match=rf"^{path}: floating-point image holds NaN or infinite values$"):
        read_image(path)


def test_stored_values_are_left_alone(tmp_path):
    """mode=None (mask files: class indices) gives the stored values, 16-bit ones included."""
    path = tmp_path / "mask.png"
    Image.fromarray(RAMP16).save(path)
    got = read_image(path, mode=None)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, RAMP16)
