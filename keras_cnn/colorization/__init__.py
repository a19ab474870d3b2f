"""Colourization as per-pixel classification over a colour palette.

The public API, for building, training and using colourizers in Python:

    from keras_cnn import colorization

    palette = colorization.fit_palette(train_images, k=24)       # uint8 (N, H, W, 3)
    model = colorization.Colorizer(colorization.UNet(num_colours=len(palette)))
    model.compile(optimizer="adam", loss=colorization.PixelCrossEntropy(), metrics=["accuracy"])
    model.fit(colorization.make_dataset(train_images, palette, batch_size=100), epochs=25)
    scores = colorization.evaluate_colours(model, val_images, palette)   # delta E, PSNR, ...
    colours = colorization.colorize(model, palette, photos)             # any size

    model = colorization.Colorizer.from_run("runs/unet")   # trained, with its palette
    colours = model.colorize(photo)
    model = colorization.Colorizer.from_preset("presets/unet")    # trained (`keras-cnn export --preset-dir`)
    model = colorization.Colorizer.from_recipe("cifar10_resunet")  # a training recipe's net, untrained

The nets (`PoolUpsampleNet`, `ConvTransposeNet`, `UNet` of the CSC413/2516
assignment, `ResUNet`, `EffNetUNet`) see the grey input; `Colorizer` puts
the pixel conversion in front of them, so saved models take RGB pixels.
`examples/colorization_unet.py` is the whole recipe on a folder of photos.
The names are loaded on first use, so importing the package does not wait
for TensorFlow.
"""

import importlib

# Public name -> (module, name there).
_EXPORTS = {
    "Colorizer": ("colorizer", "Colorizer"),
    "ColorizerInput": ("preprocessing", "ColorizerInput"),
    "PoolUpsampleNet": ("models", "PoolUpsampleNet"),
    "ConvTransposeNet": ("models", "ConvTransposeNet"),
    "UNet": ("models", "UNet"),
    "ResUNet": ("resunet", "ResUNet"),
    "EffNetUNet": ("effnet_unet", "EffNetUNet"),
    "MODELS": ("models", "MODELS"),
    "build_model": ("models", "build_model"),
    "Palette": ("palette", "Palette"),
    "fit_palette": ("palette", "fit_palette"),
    "load_palette": ("palette", "load_palette"),
    "save_palette": ("palette", "save_palette"),
    "grey": ("color", "grey"),
    "PixelCrossEntropy": ("losses", "PixelCrossEntropy"),
    "make_dataset": ("pipeline", "make_dataset"),
    "palette_labels": ("pipeline", "palette_labels"),
    # `evaluate` is also the name of the module, which would shadow the function once imported.
    "evaluate_colours": ("evaluate", "evaluate"),
    "baselines": ("evaluate", "baselines"),
    "colour_errors": ("color", "colour_errors"),
    "colorize": ("predict", "colorize"),
    "colorize_files": ("predict", "colorize_files"),
    "ColorizationConfig": ("config", "ColorizationConfig"),
    "PRESETS": ("config", "PRESETS"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attr = _EXPORTS[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), attr)


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
