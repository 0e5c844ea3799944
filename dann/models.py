"""The three DANN networks, their builders, and their composition into one model.

Builders return `keras.Sequential` networks that infer their input width when first
called, so a head is sized from whatever the feature extractor emits, never from a
literal. Configs name a builder with Hydra's `_target_` (see `configs/model/`).
"""

from __future__ import annotations

import functools
from typing import Sequence

import keras
import tensorflow as tf

from dann.data import MissingDataError
from dann.layers import GradientReversal, GradientScale

COMPONENTS = ("feature_extractor", "label_classifier", "domain_classifier")


def dense_stack(
    units: Sequence[int],
    activation: str = "relu",
    dropout: float = 0.0,
    name: str = "dense_stack",
) -> keras.Sequential:
    """A multilayer perceptron whose every layer is activated: a feature extractor.

    Args:
        units: width of each hidden layer, e.g. `[15]`.
        activation: Keras activation name.
        dropout: dropout rate after each layer, in [0, 1).
        name: the network's name.

    Input shape:
        `(batch, ...)`, flattened first.

    Output shape:
        `(batch, units[-1])`.
    """
    _check_units(name, units, allow_empty=False)
    layers: list[keras.layers.Layer] = [keras.layers.Flatten()]
    for width in units:
        layers.append(keras.layers.Dense(width, activation=activation))
        if dropout:
            layers.append(keras.layers.Dropout(dropout))
    return keras.Sequential(layers, name=name)


def conv_stack(
    filters: Sequence[int] = (32, 48),
    kernel_size: int = 5,
    pool_size: int = 2,
    activation: str = "relu",
    padding: str = "valid",
    batch_norm: bool = False,
    dropout: float = 0.0,
    name: str = "conv_stack",
) -> keras.Sequential:
    """Convolution blocks (conv, optional batch norm, activation, max-pool), then flatten.

    The defaults are the paper's MNIST feature extractor: conv 5x5x32, max-pool 2,
    conv 5x5x48, max-pool 2; on 28x28 inputs it emits 4 * 4 * 48 = 768 features.

    Args:
        filters: output channels of each convolution.
        kernel_size: square kernel side, in pixels.
        pool_size: square max-pool side and stride, in pixels.
        activation: Keras activation name.
        padding: `"valid"` or `"same"`.
        batch_norm: add batch normalisation after each convolution.
        dropout: dropout rate after the last block, in [0, 1).
        name: the network's name.

    Input shape:
        `(batch, height, width, channels)`.

    Output shape:
        `(batch, features)`.
    """
    _check_units(name, filters, allow_empty=False)
    layers: list[keras.layers.Layer] = []
    for channels in filters:
        layers.append(keras.layers.Conv2D(channels, kernel_size, padding=padding, use_bias=not batch_norm))
        if batch_norm:
            layers.append(keras.layers.BatchNormalization())
        layers.append(keras.layers.Activation(activation))
        layers.append(keras.layers.MaxPooling2D(pool_size))
    if dropout:
        layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Flatten())
    return keras.Sequential(layers, name=name)


def small_vada_cnn(
    filters: int = 64,
    dropout: float = 0.5,
    noise_stddev: float = 1.0,
    name: str = "small_vada_cnn",
) -> keras.Sequential:
    """The "small" network of VADA / DIRT-T (Shu et al., ICLR 2018, appendix), up to its pooled features.

    Three blocks of three 3x3 convolutions (batch norm, leaky ReLU 0.1); the first two
    blocks end with 2x2 max-pooling, dropout and additive Gaussian noise (training only),
    the last with global average pooling. The paper normalises each input image
    (`data.preprocessing.per_image=true` here), classifies the pooled features with one
    linear layer (`classifier_head([])`) and puts its domain classifier at the second
    block's output; here the domain classifier sees the pooled features, like DANN's.

    Args:
        filters: channels of every convolution (paper: 64).
        dropout: dropout rate after the first two blocks, in [0, 1) (paper: 0.5).
        noise_stddev: standard deviation of the Gaussian noise after them (paper: 1).
        name: the network's name.

    Input shape:
        `(batch, height, width, channels)`.

    Output shape:
        `(batch, filters)`.
    """
    layers: list[keras.layers.Layer] = []
    for block in range(3):
        for _ in range(3):
            layers += [
                keras.layers.Conv2D(filters, 3, padding="same", use_bias=False),
                keras.layers.BatchNormalization(),
                keras.layers.LeakyReLU(negative_slope=0.1),
            ]
        if block < 2:
            layers += [keras.layers.MaxPooling2D(2), keras.layers.Dropout(dropout), keras.layers.GaussianNoise(noise_stddev)]
    layers.append(keras.layers.GlobalAveragePooling2D())
    return keras.Sequential(layers, name=name)


# keras.applications networks whose inputs are in [-1, 1], dann's default normalisation ((x / 255 - 0.5) / 0.5).
BACKBONES = {
    "resnet50": keras.applications.ResNet50V2,
    "mobilenet_v3_small": functools.partial(keras.applications.MobileNetV3Small, include_preprocessing=False),
}


def pretrained_backbone(
    architecture: str = "resnet50",
    weights: str | None = "imagenet",
    bottleneck_units: int = 256,
    backbone_gradient_scale: float = 0.1,
    name: str = "pretrained_backbone",
) -> "PretrainedBackbone":
    """A `keras.applications` network, average-pooled, then a bottleneck layer: the usual recipe of adversarial DA.

    As in TLlib's DANN for Office-31 and VisDA: the backbone's gradients are scaled by
    `backbone_gradient_scale` (a 10x smaller learning rate than the new layers', for SGD;
    `dann.layers.GradientScale`), the bottleneck is dense, batch norm, ReLU, and the
    backbone's batch norm layers train on the joint source + target batch.

    Args:
        architecture: `"resnet50"` (Keras' ResNet50V2) or `"mobilenet_v3_small"`; both
            take inputs in [-1, 1], as `data.preprocessing` gives them by default.
        weights: `"imagenet"` (downloaded by Keras once, into `~/.keras/models/`), `None`
            (random initialisation), or the path of a weights file.
        bottleneck_units: width of the features, >= 1.
        backbone_gradient_scale: the backbone's gradient multiplier, >= 0.
        name: the network's name.

    Input shape:
        `(batch, height, width, 3)`, height and width >= 32.

    Output shape:
        `(batch, bottleneck_units)`.

    Raises:
        MissingDataError: the ImageNet weights cannot be downloaded (offline).
    """
    if architecture not in BACKBONES:
        raise ValueError(f"pretrained_backbone: architecture must be one of {sorted(BACKBONES)}. Received: {architecture!r}")
    _check_units(name, [bottleneck_units], allow_empty=False)
    try:
        backbone = BACKBONES[architecture](include_top=False, weights=weights, pooling="avg")
    except Exception as error:  # Keras raises a bare Exception when a download fails
        if weights != "imagenet" or "URL fetch failure" not in str(error):
            raise
        raise MissingDataError(
            f"the ImageNet weights of {architecture} could not be downloaded ({str(error)[:200]}). Connect to the internet, "
            "put the weights file Keras names there into ~/.keras/models/, pass its path (model.feature_extractor.weights=PATH), "
            "or train from scratch (model.feature_extractor.weights=null)."
        ) from None
    return PretrainedBackbone(architecture, bottleneck_units, backbone_gradient_scale, backbone=backbone, name=name)


@keras.saving.register_keras_serializable(package="dann")
class PretrainedBackbone(keras.Model):
    """`pretrained_backbone`'s network: backbone, gradient scale, bottleneck; built for any input size when first called.

    Saved models keep their weights in the file; loading rebuilds the backbone without downloading.
    """

    def __init__(self, architecture: str, bottleneck_units: int, backbone_gradient_scale: float, backbone=None, **kwargs):
        super().__init__(**kwargs)
        self.architecture, self.bottleneck_units, self.backbone_gradient_scale = architecture, bottleneck_units, backbone_gradient_scale
        self.backbone = backbone or BACKBONES[architecture](include_top=False, weights=None, pooling="avg")
        self.gradient_scale = GradientScale(backbone_gradient_scale)
        self.bottleneck = keras.Sequential(
            [keras.layers.Dense(bottleneck_units), keras.layers.BatchNormalization(), keras.layers.Activation("relu")]
        )

    def build(self, input_shape):
        self.bottleneck.build((None, self.backbone.output_shape[-1]))  # so that a saved model's weights load
        self.built = True

    def call(self, inputs, training=None):
        return self.bottleneck(self.gradient_scale(self.backbone(inputs, training=training)), training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.bottleneck_units)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "architecture": self.architecture,
            "bottleneck_units": self.bottleneck_units,
            "backbone_gradient_scale": self.backbone_gradient_scale,
        }


def classifier_head(
    hidden_units: Sequence[int],
    num_outputs: int,
    activation: str = "relu",
    dropout: float = 0.0,
    name: str = "classifier_head",
) -> keras.Sequential:
    """Hidden dense layers, then a linear layer of `num_outputs` logits.

    Used for both heads: the label classifier (`num_outputs` = number of classes)
    and the domain classifier (`num_outputs` = 1, the logit of "target").

    Args:
        hidden_units: width of each hidden layer; empty for a linear head.
        num_outputs: number of logits; set by the model builder, not by config.
        activation: Keras activation name of the hidden layers.
        dropout: dropout rate after each hidden layer, in [0, 1).
        name: the network's name.

    Input shape:
        `(batch, features)`.

    Output shape:
        `(batch, num_outputs)`, unnormalised logits, float32 under any dtype policy.
    """
    _check_units(name, hidden_units, allow_empty=True)
    if num_outputs < 1:
        raise ValueError(f"{name}: num_outputs must be >= 1. Received: num_outputs={num_outputs}")
    layers: list[keras.layers.Layer] = []
    for width in hidden_units:
        layers.append(keras.layers.Dense(width, activation=activation))
        if dropout:
            layers.append(keras.layers.Dropout(dropout))
    # Logits in float32 under a mixed policy too: bfloat16 keeps 8 bits of mantissa, coarse for
    # the softmax, the confidences that pick pseudo-labels, and the domain logit.
    layers.append(keras.layers.Dense(num_outputs, name="logits", dtype="float32"))
    return keras.Sequential(layers, name=name)


@keras.saving.register_keras_serializable(package="dann")
class AdaptationModel(keras.Model):
    """Feature extractor, label classifier, and domain classifier behind a gradient reversal.

    `call` is the deployed classifier (features, then label logits); training code
    reaches the parts through the attributes below and `domain_logits`.

    Args:
        feature_extractor: maps inputs to features `(batch, F)`.
        label_classifier: maps features to class logits `(batch, num_classes)`.
        domain_classifier: maps what it sees (`domain_input`) to one domain logit
            `(batch, 1)`; the domain label is 0 for source and 1 for target throughout `dann`.
        domain_conditioning: optional layer mapping `[features, class probabilities]` to the
            domain classifier's input, e.g. CDAN's `MultilinearMap`; `None`: the features.

    Call arguments:
        inputs: images or vectors `(batch, ...)`.
        training: whether dropout and batch norm run in training mode.

    Output shape:
        `(batch, num_classes)` class logits.
    """

    def __init__(
        self,
        feature_extractor: keras.Model,
        label_classifier: keras.Model,
        domain_classifier: keras.Model,
        domain_conditioning: keras.layers.Layer | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.feature_extractor = feature_extractor
        self.label_classifier = label_classifier
        self.domain_classifier = domain_classifier
        self.domain_conditioning = domain_conditioning
        self.gradient_reversal = GradientReversal(name="gradient_reversal")

    @property
    def components(self) -> dict[str, keras.Model]:
        """The three networks by name, in the order data flows through them."""
        return {name: getattr(self, name) for name in COMPONENTS}

    def call(self, inputs, training=None):
        return self.label_classifier(self.feature_extractor(inputs, training=training), training=training)

    def domain_input(self, features: tf.Tensor, class_probabilities: tf.Tensor | None = None, training=None) -> tf.Tensor:
        """What the domain classifier sees: the features `(batch, F)`, or their conditioning map.

        With a `domain_conditioning` layer, the map of the features and the class
        probabilities `(batch, C)`; when not given, these are the label classifier's, held
        constant (`tf.stop_gradient`, as in CDAN: the domain loss trains the features, never
        the label classifier).
        """
        if self.domain_conditioning is None:
            return features
        if class_probabilities is None:
            logits = self.label_classifier(features, training=training)
            class_probabilities = tf.stop_gradient(tf.nn.softmax(tf.cast(logits, tf.float32)))
        return self.domain_conditioning([features, tf.cast(class_probabilities, features.dtype)])

    def domain_logits(
        self, features: tf.Tensor, lambda_: tf.Tensor | None, class_probabilities: tf.Tensor | None = None, training=None
    ) -> tf.Tensor:
        """Domain logits `(batch, 1)` of features `(batch, F)`, through the gradient reversal.

        `lambda_` is the reversal strength, a scalar tensor; `None` skips the reversal (the
        domain classifier's own objective, as the gradient checks and source-only training
        use it). `class_probabilities`: see `domain_input`.
        """
        inputs = self.domain_input(features, class_probabilities, training=training)
        if lambda_ is not None:
            inputs = self.gradient_reversal(inputs, lambda_=lambda_)
        return self.domain_classifier(inputs, training=training)

    def build(self, input_shape):
        self.feature_extractor.build(input_shape)
        features_shape = self.feature_extractor.compute_output_shape(input_shape)
        self.label_classifier.build(features_shape)
        domain_input_shape = features_shape
        if self.domain_conditioning is not None:
            classes_shape = self.label_classifier.compute_output_shape(features_shape)
            self.domain_conditioning.build([features_shape, classes_shape])
            domain_input_shape = self.domain_conditioning.compute_output_shape([features_shape, classes_shape])
        self.domain_classifier.build(domain_input_shape)
        self.built = True

    def get_config(self) -> dict:
        config = super().get_config()
        for name, network in self.components.items():
            config[name] = keras.saving.serialize_keras_object(network)
        if self.domain_conditioning is not None:
            config["domain_conditioning"] = keras.saving.serialize_keras_object(self.domain_conditioning)
        return config

    @classmethod
    def from_config(cls, config: dict) -> "AdaptationModel":
        networks = {name: keras.saving.deserialize_keras_object(config.pop(name)) for name in COMPONENTS}
        if config.get("domain_conditioning") is not None:
            config["domain_conditioning"] = keras.saving.deserialize_keras_object(config["domain_conditioning"])
        return cls(**networks, **config)


# `model.keras` files written before the class had its present name call it `DANNModel`: they load as `AdaptationModel`.
keras.saving.get_custom_objects()["dann>DANNModel"] = AdaptationModel


def build_adaptation_model(
    feature_extractor: keras.Model,
    label_classifier: keras.Model,
    domain_classifier: keras.Model,
    input_shape: Sequence[int],
    domain_conditioning: keras.layers.Layer | None = None,
) -> AdaptationModel:
    """Composes three networks into a built `AdaptationModel` for inputs `(batch, *input_shape)`.

    `domain_conditioning` (e.g. `dann.layers.MultilinearMap()` for CDAN) sits between the
    features and the domain classifier; see `AdaptationModel`.
    """
    model = AdaptationModel(feature_extractor, label_classifier, domain_classifier, domain_conditioning, name="dann")
    model.build((None, *input_shape))
    return model


def frozen_classifier(model: AdaptationModel, name: str) -> keras.Sequential:
    """A non-trainable copy of `model`'s classifier (feature extractor, then label classifier), with its current weights.

    The teachers of self-training and DIRT-T; `classifier_weights(model)` lists the weights in the copy's order.
    """
    parts = [keras.models.clone_model(model.feature_extractor), keras.models.clone_model(model.label_classifier)]
    copy = keras.Sequential(parts, name=name)
    copy.build(model.feature_extractor.inputs[0].shape)
    copy.trainable = False
    copy.set_weights([weight.numpy() for weight in classifier_weights(model)])
    return copy


def classifier_weights(model: AdaptationModel) -> list:
    """The weights of `model`'s feature extractor, then of its label classifier (the order of `frozen_classifier`)."""
    return model.feature_extractor.weights + model.label_classifier.weights


def _check_units(name: str, units: Sequence[int], allow_empty: bool) -> None:
    if (not units and not allow_empty) or any(int(u) < 1 for u in units):
        raise ValueError(f"{name}: layer widths must be positive integers. Received: {list(units)}")
