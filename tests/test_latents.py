"""Latent spec: parsing, TFP sampling, entropies, encoding."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tf_ssinfogan import config as C
from tf_ssinfogan.model.latents import LatentSpace


def test_parse_and_format_codes_round_trip():
    codes = C.parse_codes("digit:cat:10:label, c1:cont:1,c2:cont, smile:bin:1:Smiling")
    assert [(c.name, c.kind, c.dim, c.label) for c in codes] == [
        ("digit", "categorical", 10, "label"), ("c1", "continuous", 1, None), ("c2", "continuous", 1, None),
        ("smile", "binary", 1, "Smiling")]
    assert C.parse_codes(C.format_codes(codes)) == codes


@pytest.mark.parametrize("text, needle", [
    ("digit:foo:10", "kind 'foo'"), ("digit:cat:x", "not an integer"), ("digit:cat:1", "at least 2"),
    ("d-1:cat:10", "identifier"), ("a:b:c:d:e", "expected"),
])
def test_bad_code_specs_are_named(text, needle):
    with pytest.raises(C.ConfigError, match=needle):
        C.parse_codes(text)


def test_sampling_shapes_ranges_and_determinism():
    space = LatentSpace(C.LatentConfig())
    a = space.sample(1000, tf.constant([3, 4]))
    b = space.sample(1000, tf.constant([3, 4]))
    c = space.sample(1000, tf.constant([3, 5]))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.allclose(a["noise"], c["noise"])
    assert a["noise"].shape == (1000, 62)
    digit = a["digit"].numpy()
    assert digit.shape == (1000, 10) and np.all(digit.sum(1) == 1)
    assert np.bincount(digit.argmax(1), minlength=10).min() > 60  # uniform over 10 values
    assert a["c1"].shape == (1000, 1) and -1 <= a["c1"].numpy().min() and a["c1"].numpy().max() <= 1
    assert abs(a["noise"].numpy().std() - 1.0) < 0.05


def test_entropies_and_log_probs():
    space = LatentSpace(C.LatentConfig(codes=C.parse_codes("d:cat:10,u:cont:2,b:bin:3")))
    d, u, b = space.codes
    assert space.entropy(d) == pytest.approx(math.log(10))
    assert space.entropy(u) == pytest.approx(2 * math.log(2))
    assert space.entropy(b) == pytest.approx(3 * math.log(2))
    assert float(space.log_prob(d, tf.one_hot([3], 10))[0]) == pytest.approx(-math.log(10), rel=1e-6)
    assert float(space.log_prob(u, [[0.2, -0.5]])[0]) == pytest.approx(-2 * math.log(2), rel=1e-6)


def test_generator_input_encoding_round_trip():
    space = LatentSpace(C.LatentConfig())
    lat = space.sample(4, tf.constant([0, 1]))
    vec = space.to_generator_input(lat)
    assert vec.shape == (4, 74)
    back = space.split(vec)
    for k in lat:
        np.testing.assert_array_equal(back[k], lat[k])
    values = {"noise": lat["noise"], "digit": tf.constant([0, 3, 9, 1]), "c1": lat["c1"], "c2": lat["c2"]}
    enc = space.from_values(values)
    np.testing.assert_array_equal(enc["digit"].numpy().argmax(1), [0, 3, 9, 1])


def test_categorical_draws_are_the_priors_without_an_int64_transpose():
    """The categorical code's draw is TFP's OneHotCategorical draw bit for bit, through int32 indices: TFP's own
    draw transposes int64 indices, which makes oneDNN's graph pass log an error line on every CPU."""
    from tf_ssinfogan.model import latents

    for dim, seed, batch in [(10, [1, 2], 8), (3, [12345, -7], 64), (37, [0, 0], 1)]:
        code = C.CodeSpec("d", "categorical", dim)
        seed = tf.constant(seed, tf.int32)
        np.testing.assert_array_equal(latents.kind_of(code).sample(code, batch, seed).numpy(),
                                      latents.code_distribution(code).sample(batch, seed=seed).numpy())
    space = LatentSpace(C.LatentConfig(codes=C.parse_codes("digit:cat:10:label,c1:cont:1,b:bin:2")))
    graph = tf.function(lambda s: space.sample(16, s)).get_concrete_function(
        tf.TensorSpec([2], tf.int32)).graph.as_graph_def()
    int64_transposes = [n.name for n in graph.node
                        if n.op == "Transpose" and n.attr["T"].type == tf.int64.as_datatype_enum]
    assert not int64_transposes
    assert any(n.op == "StatelessMultinomial" for n in graph.node)  # the categorical draw is in this graph
