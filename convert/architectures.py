"""Model builders for the architectures FER projects use, plus the project's own edge model.

Each builder takes the number of classes (and, for transfer models, a weights file) and returns
an uncompiled Keras model whose input is the *normalized* image described by its `Spec`: the
same normalization is written into the model's metadata so runtime, calibration and training
agree. Builders are registered by name for `edge-fer train --arch NAME`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from edge_fer.errors import UsageError


@dataclass(frozen=True)
class Spec:
    """How an architecture wants its input."""

    size: int
    """Input height and width in pixels."""
    color: str
    """`gray` or `rgb`."""
    normalization: str
    """One of `edge_fer.metadata.NORMALIZATIONS`."""
    description: str
    """One line for `--help` and model cards."""


@dataclass(frozen=True)
class Architecture:
    name: str
    spec: Spec
    build: Callable[..., object]


ARCHITECTURES: dict[str, Architecture] = {}


def register(name: str, spec: Spec):
    def wrap(fn):
        ARCHITECTURES[name] = Architecture(name, spec, fn)
        return fn

    return wrap


def get_architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise UsageError(
            f"unknown architecture {name!r}: choose one of {', '.join(sorted(ARCHITECTURES))}"
        ) from None


def _layers():
    import keras

    return keras, keras.layers


def _conv_bn(x, filters, *, kernel=3, strides=1, activation="relu", init="he_normal"):
    keras, L = _layers()
    x = L.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                 kernel_initializer=init)(x)
    x = L.BatchNormalization()(x)
    return L.Activation(activation)(x)


def _head(x, num_classes, dropout, hidden=0):
    keras, L = _layers()
    x = L.GlobalAveragePooling2D()(x)
    if hidden:
        x = L.Dropout(dropout)(x)
        x = L.Dense(hidden, use_bias=False, kernel_initializer="he_normal")(x)
        x = L.BatchNormalization()(x)
        x = L.Activation("relu")(x)
    x = L.Dropout(dropout)(x)
    return L.Dense(num_classes, activation="softmax", name="emotion")(x)


def _se(x, ratio=8):
    """Squeeze-excitation: cheap channel attention, INT8-friendly (mul + sigmoid)."""
    keras, L = _layers()
    ch = x.shape[-1]
    s = L.GlobalAveragePooling2D(keepdims=True)(x)
    s = L.Conv2D(max(8, ch // ratio), 1, activation="relu")(s)
    s = L.Conv2D(ch, 1, activation="sigmoid")(s)
    return L.Multiply()([x, s])


def _stage_end(x, i: int, se: bool):
    """The end of edgenet's i-th stage after the 48 px one: squeeze-excitation from the second
    on, 2x2 pooling after the 24 and 12 px stages, spatial dropout after each."""
    keras, L = _layers()
    if se and i > 0:
        x = _se(x)
    x = L.MaxPooling2D()(x) if i < 2 else x
    return L.SpatialDropout2D(0.1)(x)


@register("edgenet", Spec(48, "gray", "symmetric",
                          "the project's edge model: 48x48 gray, VGG-style stages with SE, 0.3M params at width 16"))
def build_edgenet(num_classes: int = 7, width: int = 16, se: bool = True, dropout: float = 0.4,
                  mults: tuple[int | tuple[int, ...], ...] = (2, 4, 8), stem: int = 2,
                  name: str = "edgenet", **_):
    """VGG-style stages (two 3x3 convs each; `stem` of them at 48 px) at 48, 24, 12 and 6 px,
    squeeze-excitation on the deeper stages, global pooling: the accuracy of VGG-type FER nets
    at a fraction of the size, built only from ops that quantize cleanly to INT8. Each entry of
    `mults` is a stage's width multiplier (two convs) or a tuple of one multiplier per conv."""
    keras, L = _layers()
    inp = keras.Input((48, 48, 1), name="image")
    x = inp
    for _ in range(stem):
        x = _conv_bn(x, width)
    x = L.MaxPooling2D()(x)
    for i, stage in enumerate(mults):
        for mult in (stage, stage) if isinstance(stage, int) else stage:
            x = _conv_bn(x, width * mult)
        x = _stage_end(x, i, se)
    return keras.Model(inp, _head(x, num_classes, dropout), name=name)


@register("edgenet-l", Spec(48, "gray", "symmetric",
                            "edgenet with 2x the channels on its 12 and 6 px stages: "
                            "1.1M params at width 16"))
def build_edgenet_l(num_classes: int = 7, width: int = 16, **kw):
    """edgenet trained to convergence fits its training set no better than its validation set:
    it is short of capacity. The 12 and 6 px stages are where channels are cheapest in
    multiply-adds, so they get the extra width; the 48 px stage stays narrow."""
    kw.pop("name", None)
    return build_edgenet(num_classes, width, mults=(2, 8, 16), name="edgenet_l", **kw)


def _sep_block(x, filters, *, stride=1):
    """Depthwise 3x3 + BN + ReLU, then pointwise 1x1 + BN + ReLU (MobileNet v1 block).

    The pointwise convolution is a plain GEMM, which XNNPACK runs at the same instructions per
    multiply-add as a 3x3 convolution; the depthwise part costs more per multiply-add but has
    few of them."""
    keras, L = _layers()
    x = L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False,
                          depthwise_initializer="he_normal")(x)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu")(x)
    return _conv_bn(x, filters, kernel=1)


@register("edgenet-lite", Spec(48, "gray", "symmetric",
                               "edgenet's stages as depthwise-separable blocks, for a Pi 4 with "
                               "several faces: 0.23M params, 12M multiply-adds at width 16"))
def build_edgenet_lite(num_classes: int = 7, width: int = 16, se: bool = True, dropout: float = 0.3,
                       stages: tuple[tuple[int, int], ...] = ((2, 1), (10, 2), (20, 2)),
                       name: str = "edgenet_lite", **_):
    """A standard 3x3 stem at 48 px (one input channel: a depthwise-separable stem would save
    nothing), one separable block at 48 px, then (multiplier, blocks) stages at 24, 12 and 6 px.

    Budget: at most a third of edgenet-l's Cortex-A72 instructions. Pointwise convolutions on
    the 12 and 6 px stages are where channels are cheapest, so the width goes there, as in
    edgenet-l; the 48 px stage stays at `width` channels."""
    keras, L = _layers()
    inp = keras.Input((48, 48, 1), name="image")
    x = _conv_bn(inp, width)
    x = _sep_block(x, width)
    x = L.MaxPooling2D()(x)
    for i, (mult, blocks) in enumerate(stages):
        for _ in range(blocks):
            x = _sep_block(x, width * mult)
        x = _stage_end(x, i, se)
    return keras.Model(inp, _head(x, num_classes, dropout), name=name)


@register("edgenet-s", Spec(48, "gray", "symmetric",
                            "edgenet's plain 3x3 stages with one conv at 48 px and narrower 12 and "
                            "6 px stages, for a Pi 4 with several faces: 0.12M params, 16M multiply-adds"))
def build_edgenet_s(num_classes: int = 7, width: int = 16, se: bool = True, dropout: float = 0.3,
                    mults: tuple[int, ...] = (2, 3, 4), name: str = "edgenet_s", **_):
    """edgenet with its second 48 px convolution removed (5.3M multiply-adds, a fifth of
    edgenet's, for 16 channels of 3x3 edges seen twice) and its 12 and 6 px stages at 3x and 4x
    `width`, so that a face costs at most a third of edgenet-l's Cortex-A72 instructions with
    the crop included, as `benchmarks/pi_budget.py` counts it (22.0M for edgenet-l; the crop and
    the Python around `invoke()` are about 1.1M of that), and not only for the bare `invoke()`
    (20.5-20.9M). Counted before training (untrained INT8, `benchmarks/icount.sh`, bare
    invoke; A72): mults (2, 3, 4) 5.73M, (2, 4, 4) 6.85M (too close to a third), width 14 with
    (2, 4, 4) 5.94M (narrow channels cost more per multiply-add); edgenet-l 20.54M.

    Why plain convolutions and not the depthwise-separable blocks of edgenet-lite: on the A72
    XNNPACK runs these 3x3 convolutions at 0.29-0.37 instructions per multiply-add (wider
    layers cheaper), edgenet-lite came to 0.46 (12.1M multiply-adds, 5.53M instructions), and
    it scored 61 % after 26 distilled epochs, fitting its training set worse than PublicTest:
    at a fixed instruction budget, plain 3x3 stages carry more multiply-adds."""
    return build_edgenet(num_classes, width, se=se, dropout=dropout, mults=mults, stem=1, name=name)


@register("edgenet-s80", Spec(48, "gray", "symmetric",
                              "edgenet-s with 80 filters on its 6 px stage: 0.15M params, "
                              "17M multiply-adds"))
def build_edgenet_s80(num_classes: int = 7, width: int = 16, **kw):
    """edgenet-s fits its training set no better than PublicTest (64.7 against 64.1 % after 120
    distilled epochs): short of capacity. The 6 px stage has 36 positions, so its channels are
    the cheapest parameters there are: 80 filters instead of 64 add 28k parameters (+24 %) for
    1.0M multiply-adds and, counted untrained (`benchmarks/icount.sh`, A72, bare invoke), 0.17M
    instructions (6.01M against edgenet-s's 5.84M in the same sitting); 96 filters would cost
    6.48M, over a third of edgenet-l's once the crop is counted."""
    kw.pop("name", None)
    kw.pop("mults", None)
    return build_edgenet_s(num_classes, width, mults=(2, 3, 5), name="edgenet_s80", **kw)


@register("edgenet-sw", Spec(48, "gray", "symmetric",
                              "edgenet-s with one conv at 24 px and wider 12 and 6 px stages: "
                              "0.22M params, 15M multiply-adds"))
def build_edgenet_sw(num_classes: int = 7, width: int = 16, se: bool = True, dropout: float = 0.3,
                     name: str = "edgenet_sw", **_):
    """edgenet-s80 is capacity-bound (160 distilled epochs fit its augmented training faces at
    65.8 % against 64.1 % on PublicTest, no better than 120) and spends half its multiply-adds on
    the two 24 px convolutions. One conv there frees enough for 48 and 64 filters at 12 px and
    96 and 128 at 6 px: 220k parameters (+52 %) for fewer instructions. Counted untrained
    (`benchmarks/icount.sh`, INT8, bare invoke, batch 1): 5.53M on the A72 and 1.85M on the A76,
    against edgenet-s80's 6.01M and 1.96M in the same sitting; with the crop (about 1.06M) well
    under a third of edgenet-l's 21.93M. Trained with the lite recipe (120 distilled epochs) it
    reaches 64.61 % on PublicTest (float, best epoch 85), exactly the 120-epoch edgenet-s80's
    (float, unadjusted), while fitting its augmented training faces better (65.8 % against 65.2 %
    in the last epoch): the extra parameters did not pay, so the lite model stays edgenet-s80
    (models/lite.md, variants)."""
    return build_edgenet(num_classes, width, se=se, dropout=dropout, mults=((2,), (3, 4), (6, 8)),
                         stem=1, name=name)


def count_macs(model) -> int:
    """Multiply-adds of one forward pass (batch 1), counted from the layers' shapes: convolutions
    (standard, depthwise, separable), dense layers, the elementwise multiply of
    squeeze-excitation, and the same inside a nested backbone."""
    keras, L = _layers()
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):  # a backbone nested as one layer (vgg16, ...)
            total += count_macs(layer)
        elif isinstance(layer, L.SeparableConv2D):
            _, h, w, cout = layer.output.shape
            cin = layer.input.shape[-1]
            kh, kw = layer.kernel_size
            mult = layer.depth_multiplier
            total += h * w * (kh * kw * cin * mult + cin * mult * cout)
        elif isinstance(layer, L.DepthwiseConv2D):
            _, h, w, c = layer.output.shape
            kh, kw = layer.kernel_size
            total += h * w * kh * kw * c * layer.depth_multiplier
        elif isinstance(layer, L.Conv2D):
            _, h, w, cout = layer.output.shape
            cin = layer.input.shape[-1]
            kh, kw = layer.kernel_size
            total += h * w * kh * kw * (cin // layer.groups) * cout
        elif isinstance(layer, L.Dense):
            total += int(layer.input.shape[-1]) * layer.units
        elif isinstance(layer, L.Multiply):
            total += int(np.prod(layer.output.shape[1:]))
    return int(total)


@register("cnn48", Spec(48, "gray", "unit",
                        "48x48 gray CNN: four conv blocks with batch norm and dropout"))
def build_cnn48(num_classes: int = 7, **_):
    keras, L = _layers()
    inp = keras.Input((48, 48, 1), name="image")
    x = inp
    for filters in (64, 128, 256, 512):
        x = _conv_bn(x, filters)
        x = L.MaxPooling2D()(x)
        x = L.Dropout(0.25)(x)
    x = L.Flatten()(x)
    for units in (256, 512):
        x = L.Dense(units, use_bias=False)(x)
        x = L.BatchNormalization()(x)
        x = L.Activation("relu")(x)
        x = L.Dropout(0.25)(x)
    out = L.Dense(num_classes, activation="softmax", name="emotion")(x)
    return keras.Model(inp, out, name="cnn48")


def _rgb_cnn(size: int, num_classes: int, name: str):
    keras, L = _layers()
    inp = keras.Input((size, size, 3), name="image")
    x = inp
    stages = (32, 64, 128, 256) if size <= 96 else (32, 64, 128, 256, 256)
    for filters in stages:
        x = _conv_bn(x, filters)
        x = _conv_bn(x, filters)
        x = L.MaxPooling2D()(x)
        x = L.Dropout(0.2)(x)
    return keras.Model(inp, _head(x, num_classes, 0.4, hidden=256), name=name)


@register("cnn96rgb", Spec(96, "rgb", "unit", "RGB 96x96 CNN: four double-conv stages"))
def build_cnn96rgb(num_classes: int = 7, **_):
    return _rgb_cnn(96, num_classes, "cnn96rgb")


@register("cnn224rgb", Spec(224, "rgb", "unit", "RGB 224x224 CNN: five double-conv stages"))
def build_cnn224rgb(num_classes: int = 7, **_):
    return _rgb_cnn(224, num_classes, "cnn224rgb")


@register("littlevgg", Spec(48, "gray", "unit",
                            "little VGG: ELU, he-normal, 32..256 filters, 48x48 gray"))
def build_littlevgg(num_classes: int = 7, **_):
    keras, L = _layers()
    inp = keras.Input((48, 48, 1), name="image")
    x = inp
    for filters in (32, 64, 128, 256):
        x = _conv_bn(x, filters, activation="elu")
        x = _conv_bn(x, filters, activation="elu")
        x = L.MaxPooling2D()(x)
        x = L.Dropout(0.2)(x)
    x = L.Flatten()(x)
    for _ in range(2):
        x = L.Dense(64, kernel_initializer="he_normal", use_bias=False)(x)
        x = L.BatchNormalization()(x)
        x = L.Activation("elu")(x)
        x = L.Dropout(0.5)(x)
    out = L.Dense(num_classes, activation="softmax", name="emotion")(x)
    return keras.Model(inp, out, name="littlevgg")


@register("minixception", Spec(64, "gray", "symmetric",
                               "mini-Xception (Arriaga et al.): 64x64 gray, separable convs, residual"))
def build_minixception(num_classes: int = 7, **_):
    keras, L = _layers()
    reg = keras.regularizers.l2(0.01)
    inp = keras.Input((64, 64, 1), name="image")
    x = L.Conv2D(8, 3, use_bias=False, kernel_regularizer=reg)(inp)
    x = L.Activation("relu")(L.BatchNormalization()(x))
    x = L.Conv2D(8, 3, use_bias=False, kernel_regularizer=reg)(x)
    x = L.Activation("relu")(L.BatchNormalization()(x))
    for filters in (16, 32, 64, 128):
        res = L.Conv2D(filters, 1, strides=2, padding="same", use_bias=False)(x)
        res = L.BatchNormalization()(res)
        x = L.SeparableConv2D(filters, 3, padding="same", use_bias=False, depthwise_regularizer=reg)(x)
        x = L.Activation("relu")(L.BatchNormalization()(x))
        x = L.SeparableConv2D(filters, 3, padding="same", use_bias=False, depthwise_regularizer=reg)(x)
        x = L.BatchNormalization()(x)
        x = L.MaxPooling2D(3, strides=2, padding="same")(x)
        x = L.Add()([x, res])
    x = L.Conv2D(num_classes, 3, padding="same")(x)
    x = L.GlobalAveragePooling2D()(x)
    out = L.Activation("softmax", name="emotion")(x)
    return keras.Model(inp, out, name="minixception")


def _transfer(base_fn, size: int, num_classes: int, weights: str | None, name: str):
    """A pretrained backbone with a new head. ImageNet weights cannot be downloaded on the
    machines this runs on, so `weights` is a local file or None (train from scratch)."""
    keras, L = _layers()
    inp = keras.Input((size, size, 3), name="image")
    base = base_fn(include_top=False, weights=None, input_shape=(size, size, 3))
    if weights:
        base.load_weights(weights)
    x = base(inp)
    return keras.Model(inp, _head(x, num_classes, 0.3, hidden=256), name=name)


@register("vgg16", Spec(96, "rgb", "unit",
                        "VGG16 backbone with a new head (--weights FILE, else from scratch)"))
def build_vgg16(num_classes: int = 7, weights: str | None = None, **_):
    import keras

    return _transfer(keras.applications.VGG16, 96, num_classes, weights, "vgg16")


@register("efficientnetv2", Spec(96, "rgb", "raw",
                                 "EfficientNetV2-B0 backbone with a new head (--weights FILE, else from scratch)"))
def build_efficientnetv2(num_classes: int = 7, weights: str | None = None, **_):
    import keras

    # EfficientNetV2 rescales inside the model, so it takes raw 0..255 pixels.
    return _transfer(keras.applications.EfficientNetV2B0, 96, num_classes, weights, "efficientnetv2")
