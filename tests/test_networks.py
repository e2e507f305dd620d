"""Reference MNIST networks: parameter counts, output shapes, head wiring and initialisation."""

import numpy as np

from tf_ssinfogan import config as C
from tf_ssinfogan.model.networks import build_networks

# Hand-counted from the reference architecture (spurra/ss-infogan, as in model/networks.py's docstring)
# (weights + biases; BN: gamma, beta, moving mean, moving variance):
# G: 74*1024+1024 | BN 4*1024 | 1024*6272+6272 | BN 4*6272 | 4*4*128*64+64 | BN 4*64 | 4*4*64*1+1
G_PARAMS = 76_800 + 4_096 + 6_428_800 + 25_088 + 131_136 + 256 + 1_025  # 6,667,201
# D trunk: 4*4*1*64+64 | 4*4*64*128+128 | BN 4*128 | 6272*1024+1024 | BN 4*1024
# heads: D 1024+1 | Q_ss 1024*10+10 | Q_us 1024*128+128, BN 4*128, 128*2+2
D_PARAMS = 1_088 + 131_200 + 512 + 6_423_552 + 4_096 + 1_025 + 10_250 + 131_200 + 512 + 258  # 6,703,693


def test_reference_parameter_counts():
    g, d = build_networks(C.NetworkConfig(), C.LatentConfig())
    assert g.count_params() == G_PARAMS == 6_667_201
    assert d.count_params() == D_PARAMS == 6_703_693
    trainable_g = sum(int(np.prod(v.shape)) for v in g.trainable_variables)
    assert trainable_g == G_PARAMS - 2 * (1024 + 6272 + 64)  # moving statistics are not trainable


def test_shapes_and_heads():
    latent = C.LatentConfig()
    g, d = build_networks(C.NetworkConfig(), latent)
    z = np.random.RandomState(0).randn(3, latent.input_dim).astype("float32")
    images = g(z).numpy()
    assert images.shape == (3, 28, 28, 1)
    assert images.min() >= 0.0 and images.max() <= 1.0  # sigmoid: data in [0, 1]
    out = d(images)
    assert out["logits"].shape == (3,)
    assert set(out["q"]) == {"digit", "c1", "c2"}
    assert out["q"]["digit"].shape == (3, 10)
    assert out["q"]["c1"].shape == (3, 1) and out["q"]["c2"].shape == (3, 1)


def test_heads_follow_the_code_spec():
    latent = C.LatentConfig(noise_dim=5, codes=C.parse_codes("a:cat:4:label,b:bin:3:attr,u:cont:2,v:cat:3"))
    g, d = build_networks(C.NetworkConfig(), latent)
    out = d(g(np.zeros((2, latent.input_dim), "float32")))
    assert {k: tuple(v.shape) for k, v in out["q"].items()} == {"a": (2, 4), "b": (2, 3), "u": (2, 2), "v": (2, 3)}
    assert d.q_ss_head.units == 7 and d.q_us_head.units == 5


def test_initialisation_matches_reference():
    g, d = build_networks(C.NetworkConfig(), C.LatentConfig())
    kernel = d.trunk[-3].kernel.numpy()  # FC 1024 of the trunk: N(0, 0.02)
    assert abs(kernel.mean()) < 1e-3 and abs(kernel.std() - 0.02) < 1e-3
    gamma = g.blocks[1].gamma.numpy()  # BN gamma: N(1, 0.02)
    assert abs(gamma.mean() - 1.0) < 5e-3 and abs(gamma.std() - 0.02) < 5e-3
    assert np.all(g.blocks[0].bias.numpy() == 0)
