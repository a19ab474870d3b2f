"""`Colorizer`: the task model, RGB pixels in, palette logits out.

The nets of `models.py` and `resunet.py` see the course's *net input* (grey =
RGB mean / 256, or the 4x-downsized colour image / 256 in super-resolution
mode). `Colorizer` puts that conversion in front of a net as a layer
(`preprocessing.ColorizerInput`), as keras-hub attaches an image converter
to a task, so a saved model takes what every caller has: RGB pixels 0-255
(uint8 or float), any size that is a multiple of 4. Training, evaluation, prediction and export
therefore cannot drift apart.
"""

import keras

from keras_cnn.colorization.blocks import ColourNet
from keras_cnn.colorization.preprocessing import ColorizerInput, check_input_mode
from keras_cnn.errors import UserError
from keras_cnn.fileio import check_photos, photos_one_by_one


@keras.saving.register_keras_serializable(package="keras_cnn")
class Colorizer(keras.Model):
    """A colourization net with its input conversion: RGB (N, H, W, 3) 0-255 -> logits (N, H, W, K).

    Args:
        net: a `ColourNet` (UNet, ResUNet, ...) whose input channels match
            `input_mode` (1 for "grey", 3 for "downsize").
        input_mode: "grey" (the course) or "downsize" (super-resolution).

    A colourizer made by `from_run` or `from_preset` also carries the
    palette its classes stand for (`palette`, not part of the saved model:
    a run or a preset folder keeps it in `palette.npy`) and its decoding
    (`decode`, `temperature`), so `colorize(photos)` gives colour images
    directly.

    Example:
        model = Colorizer(UNet(num_colours=24))
        logits = model(np.zeros((2, 32, 32, 3), "uint8"))  # (2, 32, 32, 24)

        model = Colorizer.from_run("runs/unet")             # trained, with its palette
        colours = model.colorize(keras_cnn.read_image("photo.jpg"))
        model = Colorizer.from_preset("presets/unet")        # trained, from `export --preset-dir`
        model = Colorizer.from_recipe("cifar10_unet")        # the recipe's net, untrained
    """

    # The run's palette and decoding (see `from_run`); not saved with the model.
    palette = None
    decode = "argmax"
    temperature = 0.38

    def __init__(self, net, input_mode="grey", **kwargs):
        if not isinstance(net, ColourNet):
            raise UserError(f"Colorizer wraps a colourization net, not a {type(net).__name__}")
        wanted = 1 if check_input_mode(input_mode) == "grey" else 3
        if net.num_in_channels != wanted:
            raise UserError(f"input mode {input_mode!r} gives {wanted} channel(s) but the net takes "
                            f"{net.num_in_channels}")
        inputs = keras.Input((None, None, 3), name="images")
        preprocessor = ColorizerInput(input_mode, name="preprocess")
        outputs = net(preprocessor(inputs))
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.net = net
        self.preprocessor = preprocessor
        self.input_mode = input_mode

    @property
    def num_colours(self):
        return self.net.num_colours

    def summary(self, *args, expand_nested=True, **kwargs):
        # The net is one nested model: without expanding it the table is one opaque row.
        return super().summary(*args, expand_nested=expand_nested, **kwargs)

    @classmethod
    def from_run(cls, run_dir, checkpoint="best"):
        """The trained colourizer of a run folder ("best" or "last" checkpoint), with the run's palette and decoding."""
        from keras_cnn.tasks import open_run

        run = open_run(run_dir, task="colorization")
        model = run.load_model(checkpoint)
        model.palette = run.assets["palette"]
        model.decode, model.temperature = run.config.decode, run.config.temperature
        return model

    @classmethod
    def from_preset(cls, preset, checkpoint=None):
        """The trained colourizer of a preset folder, with its palette and decoding, as keras-hub's `from_preset`.

        Args:
            preset: a folder `keras-cnn export --preset-dir` wrote (or a
                training run folder: then as `from_run`).
            checkpoint: for a run folder only, "best" (default) or "last".

        A recipe name ("cifar10_unet") is refused: a recipe has no weights;
        `from_recipe` builds its untrained net. The model comes uncompiled.
        """
        import os

        from keras_cnn import presets
        from keras_cnn.colorization.config import PRESETS
        from keras_cnn.colorization.palette import load_palette

        model, metadata = presets.open_trained(cls, preset, "colorization", PRESETS, checkpoint)
        if metadata is None:  # a run folder
            return model
        preset = os.fspath(preset)
        model.palette = load_palette(presets.asset_path(preset, "palette.npy"))
        if len(model.palette) != model.num_colours:
            raise UserError(f"{presets.asset_path(preset, 'palette.npy')}: {len(model.palette)} colours, but the "
                            f"model predicts {model.num_colours}")
        model.decode, model.temperature = presets.decoding(metadata, preset)
        return model

    @classmethod
    def from_recipe(cls, recipe, palette=None, **overrides):
        """An untrained colourizer as a training recipe of `ColorizationConfig` builds it.

        Args:
            recipe: a recipe name ("cifar10_unet", "cifar10_resunet", ...;
                see `keras_cnn.colorization.PRESETS`, the `--preset` of
                `keras-cnn train-colorization`).
            palette: the `Palette` the classes stand for; its size sets the
                number of classes (else the recipe's `num_colours`).
            **overrides: config fields to change (`num_filters=16`, ...),
                checked as the command line checks them.
        """
        from keras_cnn import presets
        from keras_cnn.colorization.config import PRESETS, ColorizationConfig

        cfg = presets.recipe_config(recipe, "colorization", ColorizationConfig, PRESETS, overrides)
        model = new_colorizer(cfg, len(palette) if palette is not None else cfg.num_colours)
        model.palette = palette
        model.decode, model.temperature = cfg.decode, cfg.temperature
        return model

    def colorize(self, images, decode=None, temperature=None):
        """uint8 RGB photos (H, W, 3) or (N, H, W, 3) of any size -> colourized uint8 RGB of the same shape.

        Decoded with `palette` (and `decode`, `temperature` unless given);
        big photos go in tiles (`keras_cnn.colorization.colorize`).
        """
        from keras_cnn.colorization.predict import colorize

        if self.palette is None:
            raise UserError("this colourizer has no palette: set model.palette, or make it with "
                            "Colorizer.from_run, from_preset or from_recipe(..., palette=...)")
        own_sizes = photos_one_by_one(images)
        if own_sizes is not None:  # photos of different sizes (or paths): a list back, each at its own size
            return [self.colorize(image, decode, temperature) for image in own_sizes]
        images = check_photos(images)  # a path, one photo or a batch; anything else is one line
        out = colorize(self, self.palette, images[None] if images.ndim == 3 else images, decode or self.decode,
                       self.temperature if temperature is None else temperature)
        return out[0] if images.ndim == 3 else out

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable,
                "net": keras.saving.serialize_keras_object(self.net), "input_mode": self.input_mode}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["net"] = keras.saving.deserialize_keras_object(config["net"])
        return cls(**config)


def input_mode(cfg):
    return "downsize" if cfg.downsize_input else "grey"


def new_colorizer(cfg, num_colours):
    """An untrained `Colorizer` as `cfg` describes it (net, its size, input mode), with `num_colours` classes."""
    from keras_cnn.colorization.models import build_model

    extra = ({"upsample": cfg.upsample, "weights": cfg.backbone_weights or None}
             if cfg.model == "effnet_unet" else {})
    net = build_model(cfg.model, kernel=cfg.kernel, num_filters=cfg.num_filters, num_colours=num_colours,
                      num_in_channels=3 if cfg.downsize_input else 1, **extra)
    return Colorizer(net, input_mode(cfg), name=f"{cfg.model}_colorizer")
