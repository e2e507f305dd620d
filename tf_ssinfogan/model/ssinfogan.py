"""SSInfoGAN: a Keras model whose `train_step` runs the two phases of ss-InfoGAN.

Phase 1, D and Q (Eqs. 1, 3, 2): D learns real vs fake; Q_ss learns the labels from labelled real images;
Q_us (and, with no labels at all, Q_ss too, as plain InfoGAN does) learns to recover the codes of fakes.
Phase 2, G (Eqs. 1, 4, 2): G fools D and makes its codes recoverable by Q (Q is not updated here).

D's (and Q's) BatchNorm moving statistics come from the real images of phase 1 only: every pass over fakes or
augmented views normalises with its own batch statistics and leaves the moving ones alone
(`update_statistics=False`), so inference mode (`classify`, evaluation, export) reads real images with real
images' statistics. (Until this was fixed, two of D's three training-mode passes per step were over fakes, and
the moving statistics were about two thirds fake.)

Instance noise (Sonderby et al. 2016, used by ss-InfoGAN on CIFAR-10), when enabled: every image D sees
gets N(0, std_t^2) noise, with std_t from `instance_noise_stddev` at the model's step t: the real and the
fake images of phase 1, and the fakes of phase 2 (so that G is judged by the D that was trained on noisy
inputs; the noise is additive, so G's gradient passes through unchanged). Off by default.

Mixed precision: build the model inside `precision_policy("mixed_bfloat16" or "mixed_float16")`; the losses
and the D/Q outputs stay float32. Under a `keras.optimizers.LossScaleOptimizer` (float16) the gradient is taken
of the scaled loss and the optimiser unscales it (and skips steps whose gradients overflow).

The step runs unchanged under `tf.distribute` strategies: per-example losses are reduced to the global batch
(`losses.reduce_to_global_batch`) and each replica folds its id into the latent seed.
"""

from __future__ import annotations

import contextlib
from typing import Dict

import keras
import tensorflow as tf

from tf_ssinfogan.model import losses
from tf_ssinfogan.model.images import affine_images, flip_images, random_affine_params, random_flips
from tf_ssinfogan.config import (ConfigError, ExperimentConfig, InstanceNoiseConfig, LatentConfig, NetworkConfig,
                                 ObjectiveConfig, resolve_precision)
from tf_ssinfogan.model.latents import LatentSpace, kind_of
from tf_ssinfogan.model.networks import build_networks


def instance_noise_stddev(step, config: InstanceNoiseConfig):
    """std_t of the instance noise at training step t (int or tensor); a float32 scalar tensor.

    linear: std * max(0, 1 - t / anneal_steps) (constant std when anneal_steps is 0);
    exponential: std * decay ** t (the reference's annealing factor applied once per D step).
    """
    t = tf.cast(step, tf.float32)
    std = tf.constant(config.std, tf.float32)
    if config.schedule == "exponential":
        return std * tf.pow(tf.constant(config.decay, tf.float32), t)
    if config.anneal_steps <= 0:
        return std + 0.0 * t
    return std * tf.maximum(0.0, 1.0 - t / float(config.anneal_steps))


def resolved_precision(name: str):
    """(precision, why): `name`, or for 'auto' what this machine's hardware computes natively
    (`config.resolve_precision` on /proc/cpuinfo and the visible GPUs' compute capabilities)."""
    if name != "auto":
        return name, "set explicitly"
    try:
        with open("/proc/cpuinfo") as f:
            cpuinfo = f.read()
    except OSError:  # not Linux: the GPUs decide, else float32
        cpuinfo = ""
    capabilities = [tf.config.experimental.get_device_details(gpu).get("compute_capability")
                    for gpu in tf.config.list_physical_devices("GPU")]
    return resolve_precision(name, cpuinfo, [c for c in capabilities if c])


@contextlib.contextmanager
def precision_policy(name: str):
    """Keras layers created inside take the dtype policy `name` ('float32', 'mixed_bfloat16', ...; 'auto' is
    resolved by `resolved_precision`)."""
    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy(resolved_precision(name)[0])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(old)


def _scaled(optimizer, loss):
    """The loss the gradient is taken of: times the loss scale under a LossScaleOptimizer, else itself."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.scale_loss(loss)
    return loss


class MeasuredMean(keras.metrics.Mean):
    """A weighted mean that is NaN, not 0, while nothing has been measured (total weight 0): Q_ss's loss and
    accuracy on labelled reals in an epoch that drew no labelled image."""

    def result(self):
        return tf.where(self.count > 0, super().result(), tf.constant(float("nan"), self.dtype))


class SSInfoGAN(keras.Model):
    """Generator + discriminator with Q heads, trained by `fit` (or any loop calling `train_step`).

    Args:
      latent: the latent code spec.
      network: the architecture.
      global_batch_size: batch size summed over replicas (losses are normalised by it).
      objective: the objective's options (`config.ObjectiveConfig`: loss weights, Q_ss on fakes, pseudo-labels and
        their consistency views, the guide head, instance noise, reused fakes), read where they are used.
      labelled_per_batch: k > 0 when every global batch holds k labelled images (data.TrainStream's mixed
        batches): Q_ss's loss on them is then averaged over those k (not over the batch).
      q_ss_on_fakes: train Q_ss on fakes in the D/Q phase with weight ss_weight (plain InfoGAN: no labels).
      seed: seed of the latent SeedGenerator (also draws the instance noise).
      skip_nonfinite: skip an update whose loss or gradients are not finite (the step counter still moves,
        and the metric 'skipped' counts them) instead of applying it; one device only.

    `from_config` builds it from an `ExperimentConfig`.
    """

    # Metrics over the labelled rows of a batch only (MeasuredMean): NaN, never 0, in an epoch that had none
    UNMEASURED_NAN = ("q_ss_real", "q_guide_real", "q_ss_acc")

    def __init__(self, latent: LatentConfig, network: NetworkConfig, global_batch_size: int,
                 objective: ObjectiveConfig = ObjectiveConfig(), *, labelled_per_batch: int = 0,
                 q_ss_on_fakes: bool = False, seed: int = 1, skip_nonfinite: bool = False, name: str = "ss_infogan"):
        super().__init__(name=name)
        objective.validate()
        self.latent_config, self.network_config, self.objective = latent, network, objective
        self.latent_space = LatentSpace(latent)
        self.global_batch_size = int(global_batch_size)
        self.labelled_per_batch = int(labelled_per_batch)
        self.q_ss_on_fakes = bool(q_ss_on_fakes)
        self.q_ss_fake_weight = objective.ss_weight if self.q_ss_on_fakes else objective.q_ss_fake_weight
        # Q_ss's loss on labelled reals is a mean over the labelled images: over the whole batch for the
        # reference's all-labelled batches, over the k labelled images of a mixed batch (labelled_per_batch k)
        self.labelled_scale = self.global_batch_size / labelled_per_batch if labelled_per_batch else 1.0
        # D's real term on the unlabelled images of mixed batches only (their mean), when the labelled ones are
        # there for Q_ss alone
        self.unlabelled_real_scale = None
        if labelled_per_batch and not objective.adversarial_labelled:
            self.unlabelled_real_scale = self.global_batch_size / (self.global_batch_size - labelled_per_batch)
        self.instance_noise = objective.instance_noise
        self.skip_nonfinite = bool(skip_nonfinite)
        self.ss_codes = latent.semi_supervised_codes
        self.us_codes = latent.unsupervised_codes
        self.guide_head = objective.guide_head and bool(self.ss_codes)
        self.generator, self.discriminator = build_networks(network, latent, self.guide_head)
        self.seed_generator = keras.random.SeedGenerator(seed, name="latent_seed")
        self.built = True

    @classmethod
    def from_config(cls, cfg: ExperimentConfig, labelled_ratio: float) -> "SSInfoGAN":
        """The model of a configuration whose data has `labelled_ratio` labelled examples (0: plain InfoGAN, Q_ss
        then learns from fakes)."""
        if cfg.objective.guide_head and labelled_ratio == 0.0:
            raise ConfigError("--guide_head needs labelled images (the guide head learns only from them); this run "
                              "has none (plain InfoGAN)")
        return cls(cfg.latent, cfg.network, cfg.train.batch_size, cfg.objective,
                   labelled_per_batch=cfg.data.labelled_per_batch, q_ss_on_fakes=labelled_ratio == 0.0,
                   seed=cfg.train.seed, skip_nonfinite=cfg.train.nan_policy == "skip")

    # ----------------------------------------------------------------------------------------------- set-up
    def compile(self, d_optimizer=None, g_optimizer=None, **kwargs):
        super().compile(**kwargs)
        self.d_optimizer = d_optimizer or keras.optimizers.Adam(1e-4, beta_1=0.5, name="d_adam")
        self.g_optimizer = g_optimizer or keras.optimizers.Adam(1e-3, beta_1=0.5, name="g_adam")
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)
        names = ["d_loss", "g_loss", "d_adv", "g_adv"]
        if self.ss_codes:
            names += ["q_ss_real", "q_ss_fake", "li_ss"] + (["q_guide_real"] if self.guide_head else [])
            if any(kind_of(c).enumerable for c in self.ss_codes):
                names.append("q_ss_acc")
        if self.us_codes:
            names += ["q_us_fake", "li_us"]
        if self.objective.pseudo_label_weight and any(kind_of(c).has_probabilities for c in self.ss_codes):
            names.append("pseudo_used")
        if self.skip_nonfinite:
            names.append("skipped")
        self.tracked = {n: (MeasuredMean if n in self.UNMEASURED_NAN else keras.metrics.Mean)(name=n) for n in names}

    @property
    def metrics(self):
        return list(getattr(self, "tracked", {}).values())

    @property
    def step(self):
        """Completed training steps (the generator optimiser's iteration count)."""
        return self.g_optimizer.iterations

    def current_step(self) -> int:
        """`step` as a Python int (also for a distributed, mirrored counter)."""
        return int(tf.convert_to_tensor(self.g_optimizer.iterations))

    def call(self, z, training=False):
        return self.generator(z, training=training)

    # ------------------------------------------------------------------------------------------- helpers
    def _replica_draw(self, batch, draw):
        """This replica's slice of one draw for the global batch; `draw(n, seed)` makes n items.

        With one seed for all replicas and a slice per replica, what a step draws does not depend on how many
        replicas share the batch (N replicas train like one device).
        """
        ctx = tf.distribute.get_replica_context()
        replicas = ctx.num_replicas_in_sync if ctx is not None else 1
        seed = self.seed_generator.next()
        if replicas == 1:
            return draw(batch, seed)
        start = ctx.replica_id_in_sync_group * batch
        return tf.nest.map_structure(lambda v: v[start:start + batch], draw(batch * replicas, seed))

    def instance_noise_stddev(self):
        """std_t of the instance noise at the current step (a float32 scalar tensor)."""
        return instance_noise_stddev(self.step, self.instance_noise)

    def add_instance_noise(self, images):
        """images + N(0, std_t^2) when instance noise is on (this replica's slice of one draw for the global
        batch, like the latents); the images unchanged, with no RNG draw, otherwise."""
        if not self.instance_noise.enabled:
            return images
        shape = tf.shape(images)
        noise = self._replica_draw(shape[0], lambda n, seed: tf.random.stateless_normal(
            tf.concat([[n], shape[1:]], 0), seed, dtype=images.dtype))
        return images + tf.cast(self.instance_noise_stddev(), images.dtype) * noise

    def sample_latents(self, batch_size) -> Dict[str, tf.Tensor]:
        """This replica's latents (its slice of one draw for the global batch)."""
        return self._replica_draw(batch_size, self.latent_space.sample)

    def _label_targets(self, labels) -> Dict[str, tf.Tensor]:
        """Dataset label columns -> targets in each semi-supervised code's format."""
        return {code.name: kind_of(code).label_to_target(code, labels[code.label]) for code in self.ss_codes}

    def _code_terms(self, codes, q, targets):
        """Sum over `codes` of the per-example code loss and of log Q(c|x) + H(c) ([B] each)."""
        loss, bound = 0.0, 0.0
        for code in codes:
            kind = kind_of(code)
            loss += kind.loss(q[code.name], targets[code.name])
            bound += kind.log_likelihood(code, q[code.name], targets[code.name]) + kind.entropy(code)
        return loss, bound

    def augmented_view(self, images):
        """This replica's images, each translated by up to `pseudo_label_shift` pixels per axis and rotated by up
        to `pseudo_label_rotation` degrees, and mirrored left-right with probability 1/2 with `pseudo_label_flip`
        (its slice of one draw for the global batch, like the latents)."""
        if self.objective.pseudo_label_shift or self.objective.pseudo_label_rotation:
            angles, shifts = self._replica_draw(tf.shape(images)[0], lambda n, seed: random_affine_params(
                n, seed, self.objective.pseudo_label_rotation, self.objective.pseudo_label_shift))
            images = affine_images(images, angles, shifts)
        if self.objective.pseudo_label_flip:
            images = flip_images(images, self._replica_draw(tf.shape(images)[0], random_flips))
        return images

    def _pseudo_label_terms(self, teacher, student, unlabelled):
        """Sum over the semi-supervised codes with a discrete prediction of the per-example loss of Q's output
        `student` against the confident predictions in Q's output `teacher` (no gradient), on the `unlabelled`
        images ([B]; confident ones only); a running metric counts the fraction of unlabelled images used."""
        loss, used = 0.0, []
        for code in self.ss_codes:
            made = kind_of(code).pseudo_label(teacher[code.name], self.objective.pseudo_label_threshold)
            if made is None:
                continue
            target, confident = made
            weight = confident * unlabelled
            loss += kind_of(code).loss(student[code.name], target) * weight
            used.append(weight)
        if used:
            self._track("pseudo_used", tf.add_n(used) / len(used), sample_weight=unlabelled)
        return loss

    def _apply(self, optimizer, loss, grads, variables):
        """apply_gradients, or with skip_nonfinite a no-op update (counter advanced) when anything is NaN/Inf."""
        if not self.skip_nonfinite:
            optimizer.apply_gradients(zip(grads, variables))
            return
        checks = [tf.reduce_all(tf.math.is_finite(loss))]
        if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):  # that one handles overflowing grads
            checks += [tf.reduce_all(tf.math.is_finite(g)) for g in grads]
        finite = tf.reduce_all(tf.stack(checks))

        def apply():
            optimizer.apply_gradients(zip(grads, variables))
            return tf.constant(0.0)

        def skip():
            optimizer.iterations.assign_add(1)
            return tf.constant(1.0)

        self.tracked["skipped"].update_state(tf.cond(finite, apply, skip))

    def _track(self, name, values, sample_weight=None):
        """Metric update; with skip_nonfinite, non-finite values are left out (a skipped step's losses)."""
        if not self.skip_nonfinite:
            self.tracked[name].update_state(values, sample_weight=sample_weight)
            return
        ok = tf.math.is_finite(values)
        weight = tf.cast(ok, tf.float32) if sample_weight is None else tf.cast(ok, tf.float32) * sample_weight
        self.tracked[name].update_state(tf.where(ok, values, tf.zeros_like(values)), sample_weight=weight)

    def _reduce(self, per_example):
        return losses.reduce_to_global_batch(per_example, self.global_batch_size)

    # ---------------------------------------------------------------------------------------- the phases
    def make_fakes(self, batch):
        """(latents, fakes): this replica's latent draw and G's images of it (G in training mode)."""
        latents = self.sample_latents(batch)
        return latents, self.generator(self.latent_space.to_generator_input(latents), training=True)

    def discriminator_phase(self, images, labels, label_mask, fakes=None):
        """Phase 1: one update of D and Q (trunk, D head, Q_ss and Q_us heads). G is not updated.

        `fakes`: a (latents, images) pair from `make_fakes`; None draws new ones.
        """
        o = self.objective
        latents, fakes = fakes if fakes is not None else self.make_fakes(tf.shape(images)[0])
        fakes = tf.stop_gradient(fakes)
        targets = self._label_targets(labels)
        mask = tf.cast(label_mask, tf.float32)
        images, fakes = self.add_instance_noise(images), self.add_instance_noise(fakes)
        with tf.GradientTape() as tape:
            real = self.discriminator(images, training=True)
            fake = self.discriminator(fakes, training=True, update_statistics=False)
            real_weight = None if self.unlabelled_real_scale is None else (1.0 - mask) * self.unlabelled_real_scale
            adv = losses.discriminator_loss(real["logits"], fake["logits"], real_weight)
            ss_real, _ = self._code_terms(self.ss_codes, real["q"], targets)
            ss_real = losses.masked(ss_real, mask) if self.ss_codes else tf.zeros_like(adv)
            us_fake, _ = self._code_terms(self.us_codes, fake["q"], latents)
            total = adv + o.ss_weight * self.labelled_scale * ss_real + o.us_weight * us_fake
            if self.guide_head:  # the guide learns what the reference's Q_ss learns: the labelled reals
                guide_real = losses.masked(self._code_terms(self.ss_codes, real["q_guide"], targets)[0], mask)
                total += o.ss_weight * self.labelled_scale * guide_real
            if o.pseudo_label_weight and self.ss_codes:
                student = real["q"]
                if o.pseudo_label_shift or o.pseudo_label_rotation or o.pseudo_label_flip:  # another view
                    student = self.discriminator(self.augmented_view(images), training=True,
                                                 update_statistics=False)["q"]
                pseudo = self._pseudo_label_terms(real["q"], student, 1.0 - mask)
                total += o.pseudo_label_weight * pseudo
            if self.q_ss_fake_weight and self.ss_codes:
                ss_fake, _ = self._code_terms(self.ss_codes, fake["q"], latents)
                total += self.q_ss_fake_weight * ss_fake
            loss = self._reduce(total)
            scaled = _scaled(self.d_optimizer, loss)
        variables = self.discriminator.trainable_variables
        self._apply(self.d_optimizer, loss, tape.gradient(scaled, variables), variables)

        self._track("d_loss", tf.reduce_mean(total))
        self._track("d_adv", tf.reduce_mean(adv))
        if self.ss_codes:
            self._track("q_ss_real", ss_real, sample_weight=mask)
            if self.guide_head:
                self._track("q_guide_real", guide_real, sample_weight=mask)
            cat = [c for c in self.ss_codes if kind_of(c).enumerable]
            if cat:
                acc = tf.add_n([losses.categorical_accuracy(real["q"][c.name], targets[c.name]) for c in cat])
                self._track("q_ss_acc", acc / len(cat), sample_weight=mask)
        return loss

    def generator_phase(self, batch, fakes=None, tape=None):
        """Phase 2: one update of G through D and Q. D and Q are not updated.

        Fresh fakes by default; or the D phase's (latents, images) pair `fakes`, made under the gradient
        tape `tape`, which this phase resumes (so G's forward pass is not repeated).
        """
        if fakes is None:
            tape = tf.GradientTape()
            with tape:
                latents, images = self.make_fakes(batch)
        else:
            latents, images = fakes
        with tape:
            out = self.discriminator(self.add_instance_noise(images), training=True, update_statistics=False)
            adv = losses.generator_loss(out["logits"])
            ss_fake, li_ss = self._code_terms(self.ss_codes, out["q_guide" if self.guide_head else "q"], latents)
            us_fake, li_us = self._code_terms(self.us_codes, out["q"], latents)
            total = adv + self.objective.ss_weight * ss_fake + self.objective.us_weight * us_fake
            loss = self._reduce(total)
            scaled = _scaled(self.g_optimizer, loss)
        variables = self.generator.trainable_variables
        self._apply(self.g_optimizer, loss, tape.gradient(scaled, variables), variables)

        self._track("g_loss", tf.reduce_mean(total))
        self._track("g_adv", tf.reduce_mean(adv))
        if self.ss_codes:
            self._track("q_ss_fake", tf.reduce_mean(ss_fake))
            self._track("li_ss", tf.reduce_mean(li_ss))
        if self.us_codes:
            self._track("q_us_fake", tf.reduce_mean(us_fake))
            self._track("li_us", tf.reduce_mean(li_us))
        return loss

    def train_step(self, data):
        images, labels, label_mask = data
        batch = tf.shape(images)[0]
        fakes = tape = None
        if self.objective.reuse_fakes:
            # Draw the fakes once, recording G's forward pass for the G phase
            tape = tf.GradientTape()
            with tape:
                fakes = self.make_fakes(batch)
        # Train the discriminator and Q
        self.discriminator_phase(images, labels, label_mask, fakes)
        # Train the generator
        self.generator_phase(batch, fakes, tape)
        return {name: m.result() for name, m in self.tracked.items()}

    # ----------------------------------------------------------------------------------------- inference
    @property
    def compute_dtype(self) -> str:
        """The networks' compute dtype ('float32', or 'bfloat16' / 'float16' under mixed precision)."""
        return self.generator.dtype_policy.compute_dtype

    def float32_copy(self) -> "SSInfoGAN":
        """This model, or a float32 copy with the same weights when it computes in lower precision (exports)."""
        if self.compute_dtype == "float32":
            return self
        with precision_policy("float32"):
            copy = SSInfoGAN(self.latent_config, self.network_config, self.global_batch_size, self.objective,
                             labelled_per_batch=self.labelled_per_batch, q_ss_on_fakes=self.q_ss_on_fakes,
                             name=self.name)
        copy.generator.set_weights(self.generator.get_weights())
        copy.discriminator.set_weights(self.discriminator.get_weights())
        return copy

    def _averaged(self):
        """(optimiser, variables) for each network whose optimiser (inside any loss-scale wrapper) keeps a moving
        average of its weights (--d_average, --g_average)."""
        out = []
        for name, network in (("d_optimizer", self.discriminator), ("g_optimizer", self.generator)):
            opt = getattr(self, name, None)
            opt = getattr(opt, "inner_optimizer", opt)
            if getattr(opt, "use_ema", False):
                out.append((opt, network.trainable_variables))
        return out

    def use_averaged_weights(self) -> bool:
        """Copies the moving averages of the weights into the networks that keep one (for evaluation and export
        once training is over); False, and nothing changed, where none is kept."""
        for opt, variables in self._averaged():
            opt.finalize_variable_values(variables)
        return bool(self._averaged())

    @contextlib.contextmanager
    def averaged_weights(self):
        """The networks with their averaged weights inside the block (evaluation during training), the raw ones
        after."""
        variables = [v for _, vs in self._averaged() for v in vs]
        saved = [tf.identity(v) for v in variables]
        self.use_averaged_weights()
        try:
            yield self
        finally:
            for v, value in zip(variables, saved):
                v.assign(value)

    def generate(self, latents, training=False):
        """Images from a latents dict (see latents.LatentSpace)."""
        return self.generator(self.latent_space.to_generator_input(latents), training=training)

    def classify(self, images, batch_statistics: bool = False):
        """Q on images (inference mode): class probabilities, attribute probabilities, continuous estimates.

        `batch_statistics`: every BatchNorm normalises by this batch's own statistics instead (its moving ones left
        unchanged): the reading that inference mode should match when D's moving statistics are real images'.
        """
        q = self.discriminator(images, training=batch_statistics, update_statistics=False)["q"]
        return {code.name: kind_of(code).probabilities(q[code.name]) for code in self.latent_config.codes}
