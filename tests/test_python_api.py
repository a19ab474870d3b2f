"""The Python API: the exported names, `from_run` / `from_recipe` / `from_preset`, and the Keras way in."""

import numpy as np
import pytest
import tensorflow as tf

from keras_cnn import colorization, segmentation
from keras_cnn.errors import UserError
from keras_cnn.tasks import open_run
from tests.export_helpers import blocky_images, colour_run, segmenter_run

# Also run in-process under KERAS_BACKEND=jax by .ci/run.
pytestmark = pytest.mark.portable


def test_every_exported_name_resolves_and_evaluate_stays_a_function():
    for package in (colorization, segmentation):
        assert sorted(n for n in dir(package) if not n.startswith("_") and n in package.__all__) \
            == sorted(package.__all__)
        for name in package.__all__:
            assert getattr(package, name) is not None, name
    # Importing the module `colorization.evaluate` must not hide the function exported under another name.
    import keras_cnn.colorization.evaluate  # noqa: F401

    assert callable(colorization.evaluate_colours) and colorization.evaluate_colours.__name__ == "evaluate"
    assert segmentation.DeepLabV3Segmenter.__module__ == "keras_cnn.segmentation.deeplab_v3"
    loss, metrics = segmentation.segmentation_loss(), segmentation.segmentation_metrics(2)
    assert loss.ignore_class == segmentation.IGNORE_LABEL
    assert [m.name for m in metrics] == ["fg_iou", "mean_iou", "pixel_accuracy", "thresholded_iou"]


def test_colorizer_from_recipe_builds_the_recipes_net_untrained():
    model = colorization.Colorizer.from_recipe("cifar10_unet")
    assert isinstance(model.net, colorization.UNet)
    # The course UNet: 56,856 trainable parameters, 24 colours, grey input.
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 56_856
    assert (model.num_colours, model.input_mode, model.palette, model.decode) == (24, "grey", None, "argmax")
    palette = colorization.Palette(np.random.RandomState(0).rand(10, 2) * 50)
    resunet = colorization.Colorizer.from_recipe("cifar10_resunet", palette=palette, num_filters=8)
    assert isinstance(resunet.net, colorization.ResUNet) and resunet.net.num_filters == 8
    assert resunet.num_colours == 10 and resunet.palette is palette and resunet.decode == "annealed"
    with pytest.raises(UserError, match="unknown recipe 'nope'"):
        colorization.Colorizer.from_recipe("nope")
    with pytest.raises(UserError, match="unknown config key"):
        colorization.Colorizer.from_recipe("cifar10_unet", filters=3)
    with pytest.raises(UserError, match="no palette"):
        model.colorize(np.zeros((8, 8, 3), np.uint8))


def test_colorizer_from_run_carries_the_runs_palette_and_colourizes_like_the_run(tmp_path):
    run_dir, images = colour_run(str(tmp_path), decode="annealed")
    model = colorization.Colorizer.from_run(run_dir)
    assert isinstance(model, colorization.Colorizer)
    np.testing.assert_array_equal(model.palette.colours, open_run(run_dir).assets["palette"].colours)
    assert model.decode == "annealed"
    photo = blocky_images(1, 64, seed=2)[0][:44, :52]
    np.testing.assert_array_equal(model.colorize(photo), open_run(run_dir).predict(photo))
    assert model.colorize(np.stack([photo, photo])).shape == (2, 44, 52, 3)
    # A run folder is trained too: from_preset takes it as from_run does.
    again = colorization.Colorizer.from_preset(run_dir, checkpoint="best")
    np.testing.assert_array_equal(again(images[:2]), model(images[:2]))
    with pytest.raises(UserError, match="last.keras: model file does not exist"):
        colorization.Colorizer.from_run(run_dir, checkpoint="last")


def test_segmenter_from_recipe_and_from_run(tmp_path):
    model = segmentation.DeepLabV3Segmenter.from_recipe("smoke", image_size=48, num_classes=3)
    assert model.image_size == (48, 48) and model.num_classes == 3 and model.backbone.name == "tiny_backbone"
    assert model(np.zeros((1, 48, 48, 3), np.uint8)).shape == (1, 48, 48, 3)
    with pytest.raises(UserError, match="unknown config key"):
        segmentation.DeepLabV3Segmenter.from_recipe("smoke", image=48)
    run_dir = segmenter_run(str(tmp_path / "seg"))
    trained = segmentation.DeepLabV3Segmenter.from_run(run_dir)
    photo = blocky_images(1, 96, seed=6)[0][:70, :90]
    labels = trained.segment(photo)
    assert labels.shape == (70, 90)
    np.testing.assert_array_equal(labels, segmentation.predict_labels(open_run(run_dir).model, photo))
    colour_dir, _ = colour_run(str(tmp_path / "colour"))
    with pytest.raises(UserError, match="a colorization run, not a segmentation run"):
        segmentation.DeepLabV3Segmenter.from_run(colour_dir)
    with pytest.raises(UserError, match="a segmentation run, not a colorization run"):
        colorization.Colorizer.from_run(run_dir)


def test_segmenter_compiles_and_fits_on_a_tf_data_pipeline():
    backbone = segmentation.make_backbone("tiny", 32, output_stride=16)
    model = segmentation.DeepLabV3Segmenter(backbone, num_classes=2, aspp_channels=16)
    images = blocky_images(8, seed=3)
    masks = (images.mean(-1) > 127).astype(np.int32)
    ds = tf.data.Dataset.from_tensor_slices((images, masks)).batch(4)
    model.compile(optimizer="adam", loss=segmentation.segmentation_loss(),
                  metrics=segmentation.segmentation_metrics(2))
    history = model.fit(ds, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"])) and "fg_iou" in history.history
    # Pixels labelled IGNORE_LABEL cost nothing.
    logits = model(images[:1])
    loss = segmentation.segmentation_loss()
    ignored = np.full((1, 32, 32), segmentation.IGNORE_LABEL, np.int32)
    assert float(loss(ignored, logits)) == 0.0
    assert float(loss(masks[:1], logits)) > 0.0


def test_colorizer_compiles_and_fits_on_a_tf_data_pipeline():
    images = blocky_images(16, seed=4)
    palette = colorization.fit_palette(images, k=8)
    model = colorization.Colorizer(colorization.UNet(num_filters=8, num_colours=len(palette)))
    model.compile(optimizer="adam", loss=colorization.PixelCrossEntropy(), metrics=["accuracy"])
    history = model.fit(colorization.make_dataset(images, palette, batch_size=8), epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    scores = colorization.evaluate_colours(model, images, palette, batch_size=8)
    assert set(scores) == {"loss", "accuracy", "delta_e", "psnr"}
    assert colorization.colorize(model, palette, images[:1, :20, :28]).shape == (1, 20, 28, 3)
