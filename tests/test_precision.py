"""Mixed precision (`--precision`): 16-bit compute, float32 variables and losses, loss scaling, float32 exports."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import tiny_config
from tf_ssinfogan import config as C
from tf_ssinfogan.rundir import checkpoints, paths
from tf_ssinfogan.training import trainer
from tf_ssinfogan.model.ssinfogan import SSInfoGAN, _scaled, precision_policy
from tf_ssinfogan.model.optimizers import FusedAdam, StepCountingLossScaleOptimizer

BATCH = 8


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    images = tf.constant(rng.uniform(size=(BATCH, 28, 28, 1)), tf.float32)
    labels = {"label": tf.constant(rng.integers(0, 10, BATCH), tf.int64)}
    return images, labels, tf.constant([1.0, 0.0] * (BATCH // 2))


def test_precision_is_validated_and_restored():
    with pytest.raises(C.ConfigError, match="precision 'float16' is not one of float32, mixed_bfloat16"):
        C.TrainConfig(precision="float16").validate()
    with precision_policy("mixed_bfloat16"):
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == "float32"


def test_mixed_bfloat16_step_keeps_variables_and_losses_float32(tmp_path):
    model = checkpoints.build_model(tiny_config(tmp_path, precision="mixed_bfloat16"), 0.25)
    assert keras.config.dtype_policy().name == "float32"  # the policy does not leak out of build_model
    assert model.compute_dtype == "bfloat16"
    assert {v.dtype for v in model.generator.weights + model.discriminator.weights} == {"float32"}
    before = [v.numpy() for v in model.generator.trainable_weights]
    logs = model.train_step(_batch())
    assert all(np.isfinite(float(v)) for v in logs.values())
    assert all(v.dtype == tf.float32 for v in logs.values())
    assert any(not np.allclose(a, v.numpy()) for a, v in zip(before, model.generator.trainable_weights))
    out = model.discriminator(_batch()[0], training=False)
    assert out["logits"].dtype == tf.float32 and out["q"]["digit"].dtype == tf.float32


def test_float32_copy_has_the_weights_and_close_outputs(tmp_path):
    model = checkpoints.build_model(tiny_config(tmp_path, precision="mixed_bfloat16"), 0.25)
    model.train_step(_batch())
    copy = model.float32_copy()
    assert copy.compute_dtype == "float32" and copy is not model
    for a, b in zip(model.generator.get_weights() + model.discriminator.get_weights(),
                    copy.generator.get_weights() + copy.discriminator.get_weights()):
        np.testing.assert_array_equal(a, b)
    latents = model.latent_space.sample(16, seed=tf.constant([1, 2]))
    low, full = model.generate(latents).numpy(), copy.generate(latents).numpy()
    assert low.dtype == full.dtype == np.float32
    assert np.abs(low - full).max() < 0.1  # bfloat16 keeps 8 bits of mantissa
    assert not np.array_equal(low, full)  # the copy really computes in float32
    # A float32 model is its own copy
    plain = checkpoints.build_model(tiny_config(tmp_path), 0.25)
    assert plain.float32_copy() is plain


def test_scaled_loss_only_under_a_loss_scale_optimizer():
    sgd = keras.optimizers.SGD(0.1)
    assert float(_scaled(sgd, tf.constant(2.0))) == 2.0
    scaled = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1), initial_scale=1024.0)
    assert float(_scaled(scaled, tf.constant(2.0))) == 2048.0


def _one_step_updates(policy, scale, weights):
    """(G update, D update) of one SGD step from `weights`, with loss scale `scale` (None: no scaling)."""
    with precision_policy(policy):
        model = SSInfoGAN(C.LatentConfig(), C.NetworkConfig(), BATCH, seed=5)
    model.generator.set_weights(weights[0])
    model.discriminator.set_weights(weights[1])
    opt = (lambda: StepCountingLossScaleOptimizer(keras.optimizers.SGD(0.01), initial_scale=scale)) if scale \
        else (lambda: keras.optimizers.SGD(0.01))
    model.compile(d_optimizer=opt(), g_optimizer=opt())
    nets = (model.generator, model.discriminator)
    start = [[v.numpy() for v in net.trainable_weights] for net in nets]
    model.train_step(_batch(1))
    assert model.current_step() == 1
    return [np.concatenate([(v.numpy() - s).ravel() for v, s in zip(net.trainable_weights, st)])
            for net, st in zip(nets, start)]


def test_mixed_float16_updates_are_unscaled():
    """Scaling by a power of two is exact, so after unscaling the float16 step is the same for a loss scale of
    2^10 and 2^12 (without the unscaling it would be 4 times larger: a difference of 3x its size), and close to
    the float32 step. "The same" up to the run-to-run rounding of multi-threaded float16 reductions on a CPU
    (up to 4% measured on G, whose update amplifies rounding; 0 in most runs)."""
    ref = SSInfoGAN(C.LatentConfig(), C.NetworkConfig(), BATCH, seed=5)
    weights = ref.generator.get_weights(), ref.discriminator.get_weights()
    full = _one_step_updates("float32", None, weights)
    low = _one_step_updates("mixed_float16", 2.0 ** 10, weights)
    high = _one_step_updates("mixed_float16", 2.0 ** 12, weights)
    for f, a, b in zip(full, low, high):
        assert np.abs(f).max() > 1e-5
        assert np.linalg.norm(a - b) <= 0.1 * np.linalg.norm(a)
    cosine = [float(f @ a / np.linalg.norm(f) / np.linalg.norm(a)) for f, a in zip(full, low)]
    # D's update agrees to float16 accuracy; G's gradient passes through D and is the difference of nearly
    # cancelling terms at initialisation, so float16 rounding shows more there (0.80 measured)
    assert cosine[1] > 0.99 and cosine[0] > 0.6, cosine


def test_an_overflowing_float16_step_is_skipped_but_counted():
    """Gradients that overflow float16 (a scale of 2^40) leave the weights alone, halve the scale and still
    advance the step counter that the label schedule and the checkpoints follow."""
    with precision_policy("mixed_float16"):
        model = SSInfoGAN(C.LatentConfig(), C.NetworkConfig(), BATCH, seed=5)
    model.compile(d_optimizer=StepCountingLossScaleOptimizer(FusedAdam(1e-4), initial_scale=2.0 ** 40),
                  g_optimizer=StepCountingLossScaleOptimizer(FusedAdam(1e-3), initial_scale=2.0 ** 40))
    start = model.generator.get_weights() + model.discriminator.get_weights()
    model.train_step(_batch(2))
    assert model.current_step() == 1 and int(model.d_optimizer.iterations) == 1
    assert float(model.g_optimizer.dynamic_scale) == 2.0 ** 39 and float(model.d_optimizer.dynamic_scale) == 2.0 ** 39
    trainable = {id(v) for v in model.generator.trainable_weights + model.discriminator.trainable_weights}
    for v, w in zip(model.generator.weights + model.discriminator.weights, start):
        if id(v) in trainable:
            np.testing.assert_array_equal(v.numpy(), w)


def test_mixed_float16_build_model_wraps_the_optimisers_and_resume_refuses_a_switch(tmp_path):
    cfg = tiny_config(tmp_path, precision="mixed_float16", fused_adam=True)
    model = checkpoints.build_model(cfg, 0.25)
    for opt in (model.d_optimizer, model.g_optimizer):
        assert isinstance(opt, StepCountingLossScaleOptimizer) and isinstance(opt.inner_optimizer, FusedAdam)
    assert model.compute_dtype == "float16"
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(cfg.to_json())
    other = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, precision="float32"))
    with pytest.raises(C.ConfigError, match="trained with precision 'mixed_float16'.*cannot be resumed"):
        paths.check_resume_compatible(str(run), other)
    paths.check_resume_compatible(str(run), cfg)  # the same precision resumes


def test_a_mixed_precision_model_exports_a_float32_saved_model(tmp_path):
    from tf_ssinfogan.serving import tflite
    from tf_ssinfogan.serving import saved_model

    model = checkpoints.build_model(tiny_config(tmp_path, precision="mixed_bfloat16"), 0.25)
    model.train_step(_batch())
    path = saved_model.export_saved_model(model, str(tmp_path / "export"))
    loaded = tf.saved_model.load(path)
    latents = tflite.fixed_latents(model.latent_space, 4)
    fn = loaded.signatures["serving_default"]
    specs = fn.structured_input_signature[1]
    out = fn(**{k: tf.constant(v, dtype=specs[k].dtype) for k, v in latents.items()})["images"].numpy()
    values = model.latent_space.from_values({k: tf.constant(v) for k, v in latents.items()})
    np.testing.assert_allclose(out, model.float32_copy().generate(values).numpy(), atol=1e-6)
    assert np.abs(out - model.generate(values).numpy()).max() < 0.1
    # no 16-bit op in the served graph
    graph = fn.graph.as_graph_def()
    ops = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    assert not [n.name for n in ops if n.attr["T"].type in (tf.bfloat16.as_datatype_enum,
                                                             tf.float16.as_datatype_enum)]


@pytest.mark.slow
def test_a_mixed_float16_run_resumes_at_its_epoch_boundary_and_exports_float32(tmp_path):
    """Training with loss scaling end to end: the first steps may overflow at the initial scale of 2^15 and be
    skipped, yet the step counter stays on the data's epochs, the loss-scale state is checkpointed and
    restored on resume, and the export serves float32."""
    import os

    from conftest import tiny_source

    src = tiny_source()
    cfg = tiny_config(tmp_path, precision="mixed_float16")
    first = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=2, export_at_end=False))
    assert trainer.train(first, source=src).step == 2
    ckpt = tf.train.latest_checkpoint(os.path.join(cfg.run_dir, "checkpoints"))
    assert ckpt.endswith("ckpt-2")
    saved_scale = [tf.train.load_variable(ckpt, n) for n, _ in tf.train.list_variables(ckpt) if "dynamic_scale" in n]
    assert len(saved_scale) == 2 and all(0 < s <= 2.0 ** 15 for s in saved_scale)
    result = trainer.train(cfg, source=src)  # resumes (restore asserts every object matched) and finishes
    assert result.step == 4 and result.eval is not None
    loaded = tf.saved_model.load(result.export_path)
    out = loaded.signatures["serving_default"](
        noise=tf.zeros([2, 62]), digit=tf.constant([1, 2]), c1=tf.zeros([2, 1]), c2=tf.zeros([2, 1]))
    assert out["images"].dtype == tf.float32 and np.isfinite(out["images"].numpy()).all()


# --precision=auto: the choice from fake /proc/cpuinfo texts and GPU lists, no special hardware needed
ZEN4 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_bf16 avx512_vnni\nprocessor\t: 1\n"
SAPPHIRE_RAPIDS = "flags\t\t: fpu avx2 avx512f amx_tile amx_bf16 amx_int8\n"
AVX2_ONLY = "flags\t\t: fpu sse2 avx2 fma\n"
XEON_AVX512 = "flags\t\t: fpu avx2 avx512f avx512bw avx512_vnni\n"


@pytest.mark.parametrize("cpuinfo, gpus, expected, why", [
    (ZEN4, [], "mixed_bfloat16", "CPU flags avx512_bf16"),
    (SAPPHIRE_RAPIDS, [], "mixed_bfloat16", "CPU flags amx_bf16"),
    (AVX2_ONLY, [], "float32", "no native bfloat16"),
    (XEON_AVX512, [], "float32", "no native bfloat16"),
    ("", [], "float32", "no native bfloat16"),  # no /proc/cpuinfo (not Linux)
    (AVX2_ONLY, [(8, 0)], "mixed_bfloat16", "GPU compute capability 8.0 >= 8.0"),
    (AVX2_ONLY, [(9, 0), (8, 6)], "mixed_bfloat16", "GPU compute capability 8.6 >= 8.0"),
    (ZEN4, [(7, 5)], "float32", "GPU compute capability 7.5 < 8.0"),  # the GPU computes, not the CPU
    (AVX2_ONLY, [(8, 0), (7, 0)], "float32", "GPU compute capability 7.0 < 8.0"),  # every replica must have it
])
def test_auto_precision_picks_bfloat16_only_with_native_units(cpuinfo, gpus, expected, why):
    precision, reason = C.resolve_precision("auto", cpuinfo, gpus)
    assert precision == expected and why in reason


def test_explicit_precisions_are_kept_and_auto_is_a_valid_choice():
    for p in ("float32", "mixed_bfloat16", "mixed_float16"):
        assert C.resolve_precision(p, ZEN4, [(7, 0)]) == (p, "set explicitly")
    C.TrainConfig(precision="auto").validate()
    assert C.TrainConfig().precision == "float32"  # the library default stays deterministic across machines


def test_auto_precision_policy_follows_the_machine(monkeypatch):
    from tf_ssinfogan.model import ssinfogan as model_lib

    for chosen in ("mixed_bfloat16", "float32"):
        monkeypatch.setattr(model_lib, "resolve_precision", lambda name, cpuinfo, gpus, c=chosen: (c, "test"))
        with precision_policy("auto"):
            assert keras.config.dtype_policy().name == chosen
        assert keras.config.dtype_policy().name == "float32"


@pytest.mark.slow
def test_an_auto_run_records_its_choice_and_resumes_where_auto_chooses_otherwise(tmp_path, monkeypatch):
    """config.json holds what auto resolved to (mixed_bfloat16 here); the same flags on a machine without
    bfloat16 (float32) resume the run from its checkpoint: both keep float32 variables."""
    from conftest import tiny_source

    src = tiny_source()
    cfg = tiny_config(tmp_path, precision="auto")
    first = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=2, export_at_end=False))
    monkeypatch.setattr(trainer, "resolved_precision", lambda name: ("mixed_bfloat16", "test machine"))
    assert trainer.train(first, source=src).step == 2
    assert paths.read_config(cfg.run_dir).train.precision == "mixed_bfloat16"
    monkeypatch.setattr(trainer, "resolved_precision", lambda name: ("float32", "other machine"))
    done = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, export_at_end=False))
    assert trainer.train(done, source=src).step == 4
    assert paths.read_config(cfg.run_dir).train.precision == "float32"


# The bfloat16 convolutions whose small side is tiny take their weight gradient from one im2col matmul
def test_im2col_filter_gradient_is_the_convolution_filter_gradient():
    from tf_ssinfogan.model.networks import _im2col_filter_grad

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(3, 8, 8, 5)), tf.float32)
    dy = tf.constant(rng.normal(size=(3, 4, 4, 7)), tf.float32)
    ref = tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=[4, 4, 5, 7], out_backprop=dy, strides=[1, 2, 2, 1],
                                          padding="SAME")
    np.testing.assert_allclose(_im2col_filter_grad(x, dy, 4, 2).numpy(), ref.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("transpose", [False, True])
def test_bfloat16_convolutions_with_a_tiny_side_have_keras_gradients(transpose):
    from tf_ssinfogan.model.networks import Conv, ConvTranspose

    shape = (4, 2, 2, 6) if transpose else (4, 8, 8, 6)  # small side 4x4 (conv output) / 2x2 (transposed input)
    x = tf.constant(np.random.default_rng(1).normal(size=shape), tf.float32)
    grads = {}
    for name, cls in (("ours", ConvTranspose if transpose else Conv),
                      ("keras", keras.layers.Conv2DTranspose if transpose else keras.layers.Conv2D)):
        with precision_policy("mixed_bfloat16"):
            layer = cls(3, 4, strides=2, padding="same", kernel_initializer=keras.initializers.RandomNormal(seed=2),
                        bias_initializer="ones")
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) ** 2)
        grads[name] = [y] + tape.gradient(loss, [x, layer.kernel, layer.bias])
        graph = tf.function(lambda v, layer=layer: layer(v)).get_concrete_function(x).graph
        uses_patches = any(op.type == "ExtractImagePatches" for op in graph.get_operations())
        assert not uses_patches  # the forward pass is the plain convolution
    for a, b in zip(grads["ours"], grads["keras"]):
        a, b = tf.cast(a, tf.float32).numpy(), tf.cast(b, tf.float32).numpy()
        assert np.abs(a - b).max() <= 0.02 * np.abs(b).max()  # bfloat16 rounding (8 bits of mantissa)
    with precision_policy("mixed_bfloat16"):
        layer = (ConvTranspose if transpose else Conv)(3, 4, strides=2, padding="same")

    @tf.function
    def kernel_grad(v):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.cast(layer(v), tf.float32))
        return tape.gradient(loss, layer.kernel)

    ops = kernel_grad.get_concrete_function(x).graph.get_operations()
    assert any(op.type == "ExtractImagePatches" for op in ops)  # the im2col weight gradient was taken
