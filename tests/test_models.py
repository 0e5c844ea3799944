import keras
import numpy as np
import pytest
import tensorflow as tf
from hydra.utils import instantiate

from dann.config import compose_config
from dann.data import MissingDataError
from dann.models import (
    AdaptationModel,
    build_adaptation_model,
    classifier_head,
    conv_stack,
    dense_stack,
    pretrained_backbone,
    small_vada_cnn,
)


def _paper_mnist_model():
    return build_adaptation_model(
        conv_stack(name="feature_extractor"),
        classifier_head([100, 100], num_outputs=10, name="label_classifier"),
        classifier_head([100], num_outputs=1, name="domain_classifier"),
        input_shape=(28, 28, 3),
    )


def test_paper_mnist_architecture_shapes():
    model = _paper_mnist_model()
    x = tf.zeros((5, 28, 28, 3))
    features = model.feature_extractor(x)
    assert features.shape == (5, 4 * 4 * 48)
    assert model(x).shape == (5, 10)
    assert model.domain_logits(features, tf.constant(1.0)).shape == (5, 1)
    conv_channels = [layer.filters for layer in model.feature_extractor.layers if isinstance(layer, keras.layers.Conv2D)]
    assert conv_channels == [32, 48]
    dense_units = [layer.units for layer in model.label_classifier.layers]
    assert dense_units == [100, 100, 10]
    assert [layer.units for layer in model.domain_classifier.layers] == [100, 1]


def test_components_are_exposed_in_order():
    model = _paper_mnist_model()
    assert list(model.components) == ["feature_extractor", "label_classifier", "domain_classifier"]
    owned = sum(len(network.trainable_variables) for network in model.components.values())
    assert owned == len(model.trainable_variables)


def test_save_and_load_round_trip(tmp_path):
    model = build_adaptation_model(
        dense_stack([8], name="feature_extractor"),
        classifier_head([], num_outputs=3, name="label_classifier"),
        classifier_head([4], num_outputs=1, name="domain_classifier"),
        input_shape=(5,),
    )
    x = tf.random.normal((7, 5))
    model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(restored, AdaptationModel)
    np.testing.assert_allclose(restored(x).numpy(), model(x).numpy(), rtol=1e-6)
    features = restored.feature_extractor(x)
    np.testing.assert_allclose(
        restored.domain_logits(features, tf.constant(1.0)).numpy(),
        model.domain_logits(model.feature_extractor(x), tf.constant(1.0)).numpy(),
        rtol=1e-6,
    )


def test_a_model_file_that_names_the_class_dann_model_still_loads(tmp_path):
    import zipfile

    model = build_adaptation_model(dense_stack([4]), classifier_head([], num_outputs=2), classifier_head([], num_outputs=1), (3,))
    model.save(tmp_path / "model.keras")
    with zipfile.ZipFile(tmp_path / "model.keras") as saved, zipfile.ZipFile(tmp_path / "old.keras", "w") as old:
        for item in saved.infolist():
            content = saved.read(item)
            if item.filename == "config.json":
                assert b'"AdaptationModel"' in content
                content = content.replace(b"AdaptationModel", b"DANNModel")
            old.writestr(item, content)
    restored = keras.saving.load_model(tmp_path / "old.keras")
    assert isinstance(restored, AdaptationModel)
    x = tf.random.normal((2, 3))
    np.testing.assert_allclose(restored(x).numpy(), model(x).numpy(), rtol=1e-6)


@pytest.mark.parametrize(
    "build",
    [lambda: dense_stack([]), lambda: conv_stack(filters=[0]), lambda: classifier_head([10], num_outputs=0)],
)
def test_bad_widths_are_refused(build):
    with pytest.raises(ValueError, match="Received"):
        build()


def test_small_vada_cnn_pools_to_its_channels_and_trains_with_noise_only_in_training():
    network = small_vada_cnn(filters=4, name="feature_extractor")
    model = build_adaptation_model(
        network,
        classifier_head([], num_outputs=10, name="label_classifier"),
        classifier_head([8], num_outputs=1, name="domain_classifier"),
        input_shape=(28, 28, 3),
    )
    x = tf.random.normal((2, 28, 28, 3))
    assert model.feature_extractor(x).shape == (2, 4)
    np.testing.assert_allclose(model(x, training=False).numpy(), model(x, training=False).numpy())
    assert not np.allclose(model(x, training=True).numpy(), model(x, training=True).numpy())  # dropout and noise
    conv_layers = [layer for layer in network.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(conv_layers) == 9 and all(layer.kernel_size == (3, 3) for layer in conv_layers)


@pytest.mark.parametrize("architecture", ["resnet50", "mobilenet_v3_small"])
def test_pretrained_backbone_trains_every_layer_and_saves(architecture, tmp_path):
    extractor = pretrained_backbone(architecture, weights=None, bottleneck_units=16)
    model = build_adaptation_model(extractor, classifier_head([], 3), classifier_head([8], 1), input_shape=(32, 32, 3))
    images = tf.random.stateless_uniform((4, 32, 32, 3), [0, 1], minval=-1.0, maxval=1.0)
    with tf.GradientTape() as tape:
        features = model.feature_extractor(images, training=True)
        loss = tf.reduce_sum(model.label_classifier(features)) + tf.reduce_sum(model.domain_classifier(features))
    gradients = tape.gradient(loss, model.trainable_variables)
    assert features.shape == (4, 16) and all(g is not None for g in gradients)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(loaded(images).numpy(), model(images).numpy(), atol=1e-5)


def test_pretrained_weights_that_cannot_be_downloaded_say_what_to_do(monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://weights/resnet50.h5: None -- [Errno -2] Name or service not known")

    monkeypatch.setattr("keras.src.utils.file_utils.get_file", offline)
    with pytest.raises(MissingDataError, match=r"could not be downloaded .*model.feature_extractor.weights=null"):
        pretrained_backbone("resnet50", weights="imagenet")


@pytest.mark.parametrize("architecture", ["resnet50", "mobilenet_v3_small"])
def test_backbone_configs_build_their_network(architecture):
    cfg = compose_config([f"model={architecture}", "model.feature_extractor.weights=null"])
    extractor = instantiate(cfg.model.feature_extractor)
    assert extractor(tf.zeros((1, 32, 32, 3))).shape == (1, 256)
