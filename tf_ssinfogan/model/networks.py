"""Generator and Discriminator (+ Q heads) as Keras 3 subclassed models, one architecture per dataset.

The discriminator trunk is shared by three heads, and one call returns all of them:
  * D: one real/fake logit per image,
  * Q_ss: one FC layer on the trunk features, the semi-supervised codes' logits / estimates,
  * Q_us: FC 128 + BN + LeakyReLU + FC, the unsupervised codes' logits / estimates.
Head outputs are split per code: `{"logits": [B], "q": {code_name: [B, code.dim]}}`; with a guide head (an
option) also `"q_guide"`: a second Q_ss layer, the semi-supervised codes only.

Normalisation statistics: in training mode every BatchNormalization layer normalises with the statistics of the
batch it is given, but only `update_statistics=True` calls move its moving mean and variance. SSInfoGAN calls D
with `update_statistics=False` on fakes (and on augmented views), so D's (and Q's) moving statistics, which
inference mode (`classify`, the evaluation, the export) normalises real images with, come from real images only.

Reference MNIST architecture and init (spurra/ss-infogan, its Torch7 model definition):
  G: FC 1024 +BN+ReLU -> FC 7*7*128 +BN+ReLU -> deconv 4x4 s2 64 +BN+ReLU -> deconv 4x4 s2 1 -> sigmoid
  D: conv 4x4 s2 64 +LReLU -> conv 4x4 s2 128 +BN+LReLU -> FC 1024 +BN+LReLU
  init: weights N(0, 0.02), BN gamma N(1, 0.02), biases 0.
32x32 architectures (SVHN, CelebA, CIFAR-10, own colour images): 'infogan32' (InfoGAN's SVHN/CelebA nets)
and 'dcgan32' (a DCGAN generator with the same D trunk); 64x64: 'dcgan64' (CelebA at 64x64, sprites); see
their classes.
"""

from __future__ import annotations

from typing import Dict, Sequence

import keras
import tensorflow as tf
from keras import layers, ops

from tf_ssinfogan.config import CodeSpec, LatentConfig, NetworkConfig


def _dense(units, cfg: NetworkConfig, name=None):
    return layers.Dense(
        units, kernel_initializer=keras.initializers.RandomNormal(0.0, cfg.init_stddev), name=name
    )


class BatchNorm(layers.BatchNormalization):
    """BatchNormalization whose training-mode call can leave the moving statistics alone.

    `call(x, training=True, update_statistics=False)` normalises x with its own batch statistics (synchronised
    over replicas when `synchronized`), exactly as a training-mode call does, without moving `moving_mean` /
    `moving_variance`; every other call is Keras's.
    """

    def call(self, inputs, training=None, mask=None, update_statistics=True):
        if update_statistics or not (training and self.trainable) or mask is not None or self.renorm:
            return super().call(inputs, training=training, mask=mask)
        x = ops.cast(inputs, "float32")  # as Keras: statistics in float32 under mixed precision
        axes = [i for i in range(len(x.shape)) if i != self.axis % len(x.shape)]
        mean, variance = ops.moments(x, axes=axes, synchronized=self.synchronized)
        out = ops.batch_normalization(
            x, mean, variance, axis=self.axis, epsilon=self.epsilon,
            offset=ops.cast(self.beta, "float32") if self.center else None,
            scale=ops.cast(self.gamma, "float32") if self.scale else None,
        )
        return ops.cast(out, self.compute_dtype)


def _bn(cfg: NetworkConfig, name=None):
    return BatchNorm(
        momentum=0.9,  # Torch's BN momentum 0.1
        epsilon=1e-5,
        gamma_initializer=keras.initializers.RandomNormal(1.0, cfg.init_stddev),
        synchronized=cfg.sync_batch_norm,  # batch statistics over all replicas (parity with one device)
        name=name,
    )


# oneDNN's bfloat16 weight gradient of a strided convolution (its jit_bf16 backward-weights kernel) is slow
# where the small side of the convolution is tiny: on the Zen 4 CPU (AVX512_BF16) 8x8x128 -> 4x4x256 at batch
# 128 took 113 ms against 33 ms as one im2col matmul (and 61 ms in float32); from 7x7 up oneDNN's kernel is faster.
IM2COL_MAX_SMALL_SIDE = 4 * 4  # pixels of the small side (conv output, transposed-conv input)


def _im2col_filter_grad(big, small, kernel_size, strides):
    """d kernel [k, k, C_big, C_small] of a 'same' strided convolution big -> small, as one matmul: the k x k
    patches of `big` (at the convolution's strides) times `small`'s gradient (or input, transposed case)."""
    k, c_big, c_small = kernel_size, big.shape[-1], small.shape[-1]
    patches = tf.image.extract_patches(big, [1, k, k, 1], [1, strides, strides, 1], [1, 1, 1, 1], "SAME")
    grad = tf.matmul(tf.reshape(patches, [-1, k * k * c_big]), tf.reshape(small, [-1, c_small]), transpose_a=True)
    return tf.reshape(grad, [k, k, c_big, c_small])


def _im2col_applies(layer, small_side_pixels):
    return layer.compute_dtype == "bfloat16" and small_side_pixels <= IM2COL_MAX_SMALL_SIDE and \
        layer.padding == "same" and layer.data_format == "channels_last" and layer.dilation_rate == (1, 1) and \
        layer.strides[0] == layer.strides[1] and layer.kernel_size[0] == layer.kernel_size[1]


class Conv(layers.Conv2D):
    """Conv2D whose bfloat16 weight gradient is an im2col matmul where the output is tiny (see
    IM2COL_MAX_SMALL_SIDE); elsewhere, and in float32, Keras's Conv2D unchanged."""

    def convolution_op(self, inputs, kernel):
        if not _im2col_applies(self, inputs.shape[1] * inputs.shape[2] // self.strides[0] ** 2):
            return super().convolution_op(inputs, kernel)
        k, s = self.kernel_size[0], self.strides[0]

        @tf.custom_gradient
        def conv(x, w):
            def grad(dy):
                dx = tf.nn.conv2d_transpose(dy, w, tf.shape(x), s, "SAME")
                return dx, _im2col_filter_grad(x, dy, k, s)
            return tf.nn.conv2d(x, w, s, "SAME"), grad

        return conv(inputs, ops.cast(kernel, self.compute_dtype))  # a tensor: the gradient reaches the variable


class ConvTranspose(layers.Conv2DTranspose):
    """Conv2DTranspose with the same im2col weight gradient as `Conv` where its input is tiny."""

    def call(self, inputs):
        if not _im2col_applies(self, inputs.shape[1] * inputs.shape[2]) or self.output_padding is not None:
            return super().call(inputs)
        k, s = self.kernel_size[0], self.strides[0]

        @tf.custom_gradient
        def conv_transpose(x, w):  # w: [k, k, filters, in_channels]
            shape = tf.stack([tf.shape(x)[0], x.shape[1] * s, x.shape[2] * s, w.shape[2]])

            def grad(dy):
                return tf.nn.conv2d(dy, w, s, "SAME"), _im2col_filter_grad(dy, x, k, s)
            return tf.nn.conv2d_transpose(x, w, shape, s, "SAME"), grad

        out = conv_transpose(inputs, ops.cast(self.kernel, self.compute_dtype))
        if self.use_bias:
            out = tf.nn.bias_add(out, self.bias)
        return self.activation(out) if self.activation is not None else out


def _conv(filters, cfg: NetworkConfig, transpose=False, name=None):
    cls = ConvTranspose if transpose else Conv
    return cls(
        filters, 4, strides=2, padding="same",
        kernel_initializer=keras.initializers.RandomNormal(0.0, cfg.init_stddev), name=name,
    )


class _MnistArchitecture:
    """The ss-InfoGAN reference networks for 28x28 images (any channel count)."""

    @staticmethod
    def generator_layers(cfg: NetworkConfig):
        h, w, c = cfg.image_shape
        return [
            _dense(1024, cfg, "fc1"), _bn(cfg, "bn1"), layers.ReLU(),
            _dense(7 * 7 * 128, cfg, "fc2"), _bn(cfg, "bn2"), layers.ReLU(),
            layers.Reshape((7, 7, 128)),
            _conv(64, cfg, transpose=True, name="deconv1"), _bn(cfg, "bn3"), layers.ReLU(),
            _conv(c, cfg, transpose=True, name="deconv2"),
            layers.Activation(cfg.output_activation, dtype="float32"),
        ]

    @staticmethod
    def trunk_layers(cfg: NetworkConfig):
        slope = cfg.leaky_relu_slope
        return [
            _conv(64, cfg, name="conv1"), layers.LeakyReLU(slope),
            _conv(128, cfg, name="conv2"), _bn(cfg, "bn2"), layers.LeakyReLU(slope),
            layers.Flatten(),
            _dense(1024, cfg, "fc1"), _bn(cfg, "bn3"), layers.LeakyReLU(slope),
        ]


def _conv_trunk(cfg: NetworkConfig, widths):
    """conv 4x4 s2 widths[0] +LReLU, then conv widths[i] +BN+LReLU for the others (layers conv<i+1>, bn<i+1>),
    flattened."""
    slope = cfg.leaky_relu_slope
    out = [_conv(widths[0], cfg, name="conv1"), layers.LeakyReLU(slope)]
    for i, w in enumerate(widths[1:], start=2):
        out += [_conv(w, cfg, name=f"conv{i}"), _bn(cfg, f"bn{i}"), layers.LeakyReLU(slope)]
    return out + [layers.Flatten()]


def _d32_trunk(cfg: NetworkConfig):
    """conv 4x4 s2 64 +LReLU -> conv 128 +BN+LReLU -> conv 256 +BN+LReLU -> flatten (4*4*256 features)."""
    return _conv_trunk(cfg, (64, 128, 256))


def _dcgan_generator(cfg: NetworkConfig, widths):
    """DCGAN generator: FC 4*4*widths[0] +BN+ReLU -> upconv widths[i] +BN+ReLU ... -> upconv C -> output."""
    out = [_dense(4 * 4 * widths[0], cfg, "fc1"), _bn(cfg, "bn1"), layers.ReLU(), layers.Reshape((4, 4, widths[0]))]
    for i, w in enumerate(widths[1:], start=1):
        out += [_conv(w, cfg, transpose=True, name=f"deconv{i}"), _bn(cfg, f"bn{i + 1}"), layers.ReLU()]
    return out + [_conv(cfg.image_shape[2], cfg, transpose=True, name=f"deconv{len(widths)}"),
                  layers.Activation(cfg.output_activation, dtype="float32")]


class _InfoGAN32Architecture:
    """InfoGAN's SVHN / CelebA networks (Chen et al. 2016, appendix C.2-C.3) for 32x32 images.

    G: FC 2*2*448 +BN+ReLU -> upconv 256 +BN+ReLU -> upconv 128 +ReLU -> upconv 64 +ReLU -> upconv C (tanh
    or sigmoid as configured); all upconvs 4x4 stride 2. D trunk: `_d32_trunk`; Q_us adds FC 128 +BN+LReLU.
    """

    @staticmethod
    def generator_layers(cfg: NetworkConfig):
        c = cfg.image_shape[2]
        return [
            _dense(2 * 2 * 448, cfg, "fc1"), _bn(cfg, "bn1"), layers.ReLU(),
            layers.Reshape((2, 2, 448)),
            _conv(256, cfg, transpose=True, name="deconv1"), _bn(cfg, "bn2"), layers.ReLU(),
            _conv(128, cfg, transpose=True, name="deconv2"), layers.ReLU(),
            _conv(64, cfg, transpose=True, name="deconv3"), layers.ReLU(),
            _conv(c, cfg, transpose=True, name="deconv4"),
            layers.Activation(cfg.output_activation, dtype="float32"),
        ]

    @staticmethod
    def trunk_layers(cfg: NetworkConfig):
        return _d32_trunk(cfg)


class _DCGAN32Architecture:
    """A DCGAN (Radford et al. 2016) generator for 32x32 images, with the same D trunk as 'infogan32'.

    G: FC 4*4*256 +BN+ReLU -> upconv 128 +BN+ReLU -> upconv 64 +BN+ReLU -> upconv C (tanh); all upconvs 4x4
    stride 2 (the TensorFlow DCGAN tutorial's generator, with 4x4 kernels, sized for 32x32). Compared with
    'infogan32' it has a 4x4 spatial start and batch-normalises every hidden layer, the DCGAN recipe
    (Radford et al.) that trains on CIFAR-10's varied natural images; its width (256 at 4x4, not DCGAN's
    512) keeps a training step CPU-affordable (about 4x fewer generator FLOPs).
    """

    @staticmethod
    def generator_layers(cfg: NetworkConfig):
        return _dcgan_generator(cfg, (256, 128, 64))

    @staticmethod
    def trunk_layers(cfg: NetworkConfig):
        return _d32_trunk(cfg)


class _DCGAN64Architecture:
    """DCGAN (Radford et al. 2016) for 64x64 images (CelebA at 64x64, sprites), the layout of its paper and of
    the TensorFlow/PyTorch DCGAN examples with a 64-filter base.

    G: FC 4*4*512 +BN+ReLU -> upconv 256 +BN+ReLU -> upconv 128 +BN+ReLU -> upconv 64 +BN+ReLU -> upconv C;
    D trunk: conv 64 +LReLU -> conv 128 +BN+LReLU -> conv 256 +BN+LReLU -> conv 512 +BN+LReLU -> flatten
    (4*4*512 features); all 4x4 stride 2.
    """

    @staticmethod
    def generator_layers(cfg: NetworkConfig):
        return _dcgan_generator(cfg, (512, 256, 128, 64))

    @staticmethod
    def trunk_layers(cfg: NetworkConfig):
        return _conv_trunk(cfg, (64, 128, 256, 512))


ARCHITECTURES = {"mnist": _MnistArchitecture, "infogan32": _InfoGAN32Architecture, "dcgan32": _DCGAN32Architecture,
                 "dcgan64": _DCGAN64Architecture}


class Generator(keras.Model):
    """G(z, c): latent vector [B, latent_dim] -> images [B, H, W, C] in the data range."""

    def __init__(self, network: NetworkConfig, latent_dim: int, **kwargs):
        super().__init__(name=kwargs.pop("name", "generator"), **kwargs)
        self.network_config = network
        self.latent_dim = latent_dim
        self.blocks = ARCHITECTURES[network.architecture].generator_layers(network)

    def call(self, z, training=False):
        x = z
        for layer in self.blocks:
            x = layer(x, training=training) if isinstance(layer, layers.BatchNormalization) else layer(x)
        return x


class Discriminator(keras.Model):
    """Shared trunk with D, Q_ss and Q_us heads; `call` returns every head."""

    def __init__(self, network: NetworkConfig, latent: LatentConfig, guide_head: bool = False, **kwargs):
        super().__init__(name=kwargs.pop("name", "discriminator"), **kwargs)
        self.network_config = network
        self.ss_codes: Sequence[CodeSpec] = latent.semi_supervised_codes
        self.us_codes: Sequence[CodeSpec] = latent.unsupervised_codes
        self.trunk = ARCHITECTURES[network.architecture].trunk_layers(network)
        self.d_head = _dense(1, network, "d_head")
        self.q_ss_head = (
            _dense(sum(c.output_dim for c in self.ss_codes), network, "q_ss_head") if self.ss_codes else None
        )
        # A second linear Q_ss head on the trunk (SSInfoGAN's guide_head): G's semi-supervised code term goes
        # through it, while q_ss_head (classify, evaluation, export) is free to learn as a classifier
        self.q_guide_head = (
            _dense(sum(c.output_dim for c in self.ss_codes), network, "q_guide_head")
            if guide_head and self.ss_codes else None
        )
        if self.us_codes:
            self.q_us_hidden = [_dense(128, network, "q_us_fc"), _bn(network, "q_us_bn"),
                                layers.LeakyReLU(network.leaky_relu_slope)]
            self.q_us_head = _dense(sum(c.output_dim for c in self.us_codes), network, "q_us_head")
        else:
            self.q_us_hidden, self.q_us_head = [], None

    @staticmethod
    def _run(stack, x, training, update_statistics):
        for layer in stack:  # every normalisation layer of D is a BatchNorm (`_bn`)
            x = layer(x, training=training, update_statistics=update_statistics) if isinstance(layer, BatchNorm) \
                else layer(x)
        return x

    @staticmethod
    def _split(out, codes: Sequence[CodeSpec]) -> Dict[str, object]:
        res, start = {}, 0
        for c in codes:
            res[c.name] = keras.ops.cast(out[:, start:start + c.output_dim], "float32")
            start += c.output_dim
        return res

    def call(self, images, training=False, update_statistics=True):
        """Every head on `images`; `update_statistics=False` (fakes) leaves BN's moving statistics unchanged."""
        features = self._run(self.trunk, images, training, update_statistics)
        q = {}
        if self.q_ss_head is not None:
            q.update(self._split(self.q_ss_head(features), self.ss_codes))
        if self.q_us_head is not None:
            hidden = self._run(self.q_us_hidden, features, training, update_statistics)
            q.update(self._split(self.q_us_head(hidden), self.us_codes))
        logits = keras.ops.cast(keras.ops.squeeze(self.d_head(features), -1), "float32")
        out = {"logits": logits, "q": q}
        if self.q_guide_head is not None:
            out["q_guide"] = self._split(self.q_guide_head(features), self.ss_codes)
        return out


def build_networks(network: NetworkConfig, latent: LatentConfig, guide_head: bool = False):
    """Creates and builds (G, D) so that their variables exist; `guide_head` adds D's second Q_ss head."""
    g = Generator(network, latent.input_dim)
    d = Discriminator(network, latent, guide_head)
    g(keras.ops.zeros((1, latent.input_dim)))
    d(keras.ops.zeros((1,) + tuple(network.image_shape)))
    return g, d
