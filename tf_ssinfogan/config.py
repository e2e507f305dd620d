"""Typed, validated configuration for tf_ssinfogan (frozen dataclasses, no absl).

The CLIs turn flags into these objects; every library function takes them. Tests build and edit them with
`dataclasses.replace`. `validate()` raises `ConfigError` with a message naming the offending field.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Optional, Tuple

# The spelling of each code kind in a code spec (name: short name, aliases, fewest dims); what a kind *means*
# is its `latents.CodeKind` (this module stays free of TensorFlow).
_KIND_SPELLING = {
    "categorical": ("cat", ("cat", "categorical"), 2),
    "continuous": ("cont", ("cont", "continuous", "uniform"), 1),
    "binary": ("bin", ("bin", "binary"), 1),
}
CODE_KINDS = tuple(_KIND_SPELLING)
_KIND_ALIASES = {alias: kind for kind, (_, aliases, _) in _KIND_SPELLING.items() for alias in aliases}


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the value."""


def _field(default, help: str, **meta):
    """A dataclass field with its command-line description: `help`, and optionally `flag` (the flag's name
    when it differs from the field's), `choices` (an enum flag), `unset` (the flag value that means None),
    `flag=None` (no flag: derived from other flags). `cli.py` defines and reads the flags from these."""
    return dataclasses.field(default=default, metadata={"help": help, **meta})


@dataclasses.dataclass(frozen=True)
class CodeSpec:
    """One latent code.

    Attributes:
      name: Unique name; also the serving input name.
      kind: 'categorical' (k values, one-hot), 'continuous' (Uniform(-1, 1) per dim) or 'binary'
        (Bernoulli(0.5) per dim).
      dim: Number of categories (categorical) or of dimensions (continuous, binary).
      label: Dataset label column the code is tied to (a semi-supervised code, c_ss); None for an
        unsupervised code (c_us).
    """

    name: str
    kind: str
    dim: int = 1
    label: Optional[str] = None

    @property
    def semi_supervised(self) -> bool:
        return self.label is not None

    @property
    def output_dim(self) -> int:
        """Width of the Q head output (logits or estimates) for this code."""
        return self.dim

    def validate(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum():
            raise ConfigError(f"code name {self.name!r} must be a non-empty identifier (letters, digits, _)")
        if self.kind not in CODE_KINDS:
            raise ConfigError(f"code {self.name!r}: kind {self.kind!r} is not one of {CODE_KINDS}")
        if self.dim < 1:
            raise ConfigError(f"code {self.name!r}: dim must be >= 1, got {self.dim}")
        fewest = _KIND_SPELLING[self.kind][2]
        if self.dim < fewest:
            raise ConfigError(f"code {self.name!r}: a {self.kind} code needs at least {fewest} values, got {self.dim}")


def parse_codes(text: str) -> Tuple[CodeSpec, ...]:
    """Parses 'name:kind:dim[:label],...' e.g. 'digit:cat:10:label,c1:cont:1,c2:cont:1'.

    A fourth field ties the code to that dataset label column (semi-supervised).
    """
    codes = []
    for item in [s.strip() for s in text.split(",") if s.strip()]:
        parts = item.split(":")
        if len(parts) not in (2, 3, 4):
            raise ConfigError(
                f"code {item!r}: expected 'name:kind[:dim[:label]]' (kind one of cat, cont, bin)"
            )
        name, kind = parts[0], parts[1].lower()
        if kind not in _KIND_ALIASES:
            raise ConfigError(f"code {item!r}: kind {parts[1]!r} is not one of cat, cont, bin")
        try:
            dim = int(parts[2]) if len(parts) > 2 and parts[2] else 1
        except ValueError:
            raise ConfigError(f"code {item!r}: dim {parts[2]!r} is not an integer") from None
        label = parts[3] if len(parts) > 3 and parts[3] else None
        spec = CodeSpec(name=name, kind=_KIND_ALIASES[kind], dim=dim, label=label)
        spec.validate()
        codes.append(spec)
    return tuple(codes)


def format_codes(codes: Tuple[CodeSpec, ...]) -> str:
    """Inverse of `parse_codes`."""
    out = []
    for c in codes:
        s = f"{c.name}:{_KIND_SPELLING[c.kind][0]}:{c.dim}"
        if c.label:
            s += f":{c.label}"
        out.append(s)
    return ",".join(out)


@dataclasses.dataclass(frozen=True)
class LatentConfig:
    """Noise z plus named codes (InfoGAN's c, split into c_ss and c_us)."""

    noise_dim: int = _field(62, "Size of the incompressible noise z.")
    # 'normal' N(0,1) (ss-InfoGAN reference) or 'uniform' U(-1,1) (InfoGAN)
    noise_distribution: str = _field("normal", "Prior of z.", choices=("normal", "uniform"))
    codes: Tuple[CodeSpec, ...] = _field(
        (CodeSpec("digit", "categorical", 10, "label"), CodeSpec("c1", "continuous", 1), CodeSpec("c2", "continuous", 1)),
        "Latent codes 'name:kind:dim[:label],...'; kind cat|cont|bin; a label column makes the code semi-supervised.")

    def validate(self) -> None:
        if self.noise_dim < 0:
            raise ConfigError(f"noise_dim must be >= 0, got {self.noise_dim}")
        if self.noise_distribution not in ("normal", "uniform"):
            raise ConfigError(f"noise_distribution {self.noise_distribution!r} is not 'normal' or 'uniform'")
        names = [c.name for c in self.codes]
        if len(set(names)) != len(names):
            raise ConfigError(f"code names must be unique, got {names}")
        if "noise" in names:
            raise ConfigError("'noise' is reserved for the noise input and cannot name a code")
        for c in self.codes:
            c.validate()
        if self.noise_dim + sum(c.dim for c in self.codes) == 0:
            raise ConfigError("the latent space is empty: set noise_dim or add codes")

    @property
    def semi_supervised_codes(self) -> Tuple[CodeSpec, ...]:
        return tuple(c for c in self.codes if c.semi_supervised)

    @property
    def unsupervised_codes(self) -> Tuple[CodeSpec, ...]:
        return tuple(c for c in self.codes if not c.semi_supervised)

    @property
    def input_dim(self) -> int:
        return self.noise_dim + sum(c.dim for c in self.codes)


# The image size (height, width) each network family of model/networks.py takes (any channel count); kept here so
# that a configuration is validated without importing TensorFlow (a test checks networks.ARCHITECTURES agrees).
ARCHITECTURE_SIZES = {"mnist": (28, 28), "infogan32": (32, 32), "dcgan32": (32, 32), "dcgan64": (64, 64)}


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Architecture choice and its knobs (see model/networks.py)."""

    # 'mnist' (ss-InfoGAN reference, 28x28); 'infogan32', 'dcgan32' (32x32); 'dcgan64' (64x64)
    architecture: str = _field("mnist", "Network family (see networks.ARCHITECTURES).")
    image_shape: Tuple[int, int, int] = _field((28, 28, 1), "Image height,width,channels.")
    leaky_relu_slope: float = _field(0.01, "LeakyReLU slope in D (reference code; the InfoGAN paper uses 0.1).")
    init_stddev: float = _field(0.02, "Std of the normal weight initialisation.")
    output_activation: str = _field("sigmoid", "G output: sigmoid (data in [0,1]) or tanh (data in [-1,1]).",
                                    choices=("sigmoid", "tanh"))
    sync_batch_norm: bool = _field(False, "Synchronised BatchNormalization: batch statistics over all replicas, "
                                   "so that N replicas train like one device.")

    def validate(self) -> None:
        if self.architecture not in ARCHITECTURE_SIZES:
            raise ConfigError(f"architecture {self.architecture!r} is not one of {sorted(ARCHITECTURE_SIZES)}")
        if len(self.image_shape) != 3 or min(self.image_shape) < 1:
            raise ConfigError(f"image_shape must be (height, width, channels), got {self.image_shape}")
        if self.output_activation not in ("sigmoid", "tanh"):
            raise ConfigError(f"output_activation {self.output_activation!r} is not 'sigmoid' or 'tanh'")
        size = ARCHITECTURE_SIZES[self.architecture]
        if tuple(self.image_shape[:2]) != size:
            raise ConfigError(f"architecture {self.architecture!r} needs {size[0]}x{size[1]} images, got "
                              f"image_shape {tuple(self.image_shape)}")

    @property
    def data_range(self) -> Tuple[float, float]:
        return (0.0, 1.0) if self.output_activation == "sigmoid" else (-1.0, 1.0)


DATA_SOURCES = ("npz", "tfds", "image_folder", "colour_digits", "sprites")
INSTANCE_NOISE_SCHEDULES = ("linear", "exponential")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "auto")
# CPU flags (/proc/cpuinfo) of native bfloat16 arithmetic: AVX-512 BF16 (AMD Zen 4+, Intel Cooper Lake+) and AMX
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def resolve_precision(precision: str, cpuinfo: str = "", gpu_capabilities=()) -> Tuple[str, str]:
    """(precision, why) for `precision`; 'auto' picks mixed_bfloat16 where the hardware computes in bfloat16
    natively, else float32. `cpuinfo` is /proc/cpuinfo's text, `gpu_capabilities` the (major, minor) compute
    capabilities of the visible GPUs: any GPU decides (bf16 from compute capability 8.0, Ampere), else the CPU's
    flags (BF16_CPU_FLAGS). Other values are returned as they are."""
    if precision != "auto":
        return precision, "set explicitly"
    gpus = [tuple(c) for c in gpu_capabilities]
    if gpus:
        if all(c >= (8, 0) for c in gpus):
            return "mixed_bfloat16", f"GPU compute capability {'.'.join(map(str, min(gpus)))} >= 8.0"
        return "float32", f"GPU compute capability {'.'.join(map(str, min(gpus)))} < 8.0 (no native bfloat16)"
    flags = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags.update(value.split())
    found = [f for f in BF16_CPU_FLAGS if f in flags]
    if found:
        return "mixed_bfloat16", f"CPU flags {', '.join(found)}"
    return "float32", f"no native bfloat16 (neither a GPU of compute capability >= 8.0 nor CPU flag " \
        f"{' / '.join(BF16_CPU_FLAGS)})"
STRATEGIES = ("default", "mirrored", "multi_worker")
LOOPS = ("fit", "custom")
NAN_POLICIES = ("stop", "skip")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the images and labels come from and how the labelled subset is drawn."""

    source: str = _field("npz", "Data source: 'npz' (arrays in a .npz file), 'tfds' (a TFDS dataset by name), "
                         "'image_folder', or a data set built offline with known factors (data/synthetic.py): "
                         "'colour_digits' (the npz's digits coloured, 32x32x3) or 'sprites' (dSprites-like).",
                         choices=DATA_SOURCES)
    npz_path: str = _field("", "npz with x_train,y_train,x_test,y_test (label -1 = unlabelled; extra columns "
                           "y_train_<name>/y_test_<name>); empty = the MNIST shipped with the package.")
    image_dir: str = _field("", "Image folder root (with --source=image_folder): labelled/<class>/*.png, "
                            "unlabelled/*.png, optional test/<class>/*.png; or train/<class>/*.jpg (all labelled) "
                            "and test/<class>/*.jpg, the layout of CIFAR-10's JPEG copy.")
    tfds_name: str = _field("mnist", "TFDS dataset name (with --source=tfds).")
    tfds_data_dir: Optional[str] = _field(None, "TFDS data_dir.")
    tfds_download: bool = _field(True, "Let TFDS download the dataset if it is not in tfds_data_dir.", flag="download")
    train_split: str = _field("train", "TFDS training split (e.g. 'train+extra' for SVHN).")
    test_split: str = _field("test", "TFDS test split (final evaluation).")
    # Image preprocessing at load time (tfds and image_folder): a centred crop (height, width) first, then a
    # resize to (height, width); () = none. channels: 0 = as stored, 1 or 3 = convert (image folders: the
    # colour mode to decode to; 0 there means 3). The train CLI derives resize_to (--resize_images) and channels
    # from --image_shape.
    center_crop: Tuple[int, ...] = _field((), "Centred crop height,width applied before resizing (tfds); empty = none.")
    resize_to: Tuple[int, ...] = _field((), "Resize to (height, width) at load time.", flag=None)
    channels: int = _field(0, "Channels to convert to (0 = as stored).", flag=None)
    labelled_fraction: float = _field(0.01, "Fraction of training images labelled (0 = plain InfoGAN; 1.0 = every "
                                      "labelled example); used when labelled_count is unset.")
    labelled_count: Optional[int] = _field(None, "Number of labelled images (overrides the fraction when >= 0).",
                                           unset=-1)
    labelled_selection: str = _field("random", "How the labelled subset is chosen: 'random' (reference) or "
                                     "'balanced' (equal count per class).", choices=("random", "balanced"))
    label_seed: int = _field(1234, "Seed of the labelled-subset choice.")
    measured_labels: Tuple[str, ...] = _field(
        (), "Label columns measured from the pixels of 28x28 grey digits and added to the data (any source): slant, "
        "thickness (tf_ssinfogan/data/moments.py; each on the training split's [-1, 1] rank scale), for continuous "
        "semi-supervised codes such as slant:cont:1:slant.")
    synthetic_seed: int = _field(2017, "Seed of a built data set (colour_digits, sprites): same seed, same bytes.")
    synthetic_size: int = _field(32, "Image size of the sprites (32 or 64).")
    synthetic_count: int = _field(30000, "Training images of the sprites (test: a tenth as many).")
    # Labelled-draw annealing (reference): P(labelled batch) starts at 1.0 and falls by anneal_decrement
    # every anneal_every updates, floored at the true labelled ratio.
    anneal_start: float = _field(1.0, "P(labelled batch) at step 0.")
    anneal_decrement: float = _field(0.1, "P(labelled batch) decrement per period.")
    anneal_every: int = _field(100, "Annealing period in steps.")
    anneal_floor: float = _field(0.0, "Lowest P(labelled batch) of the annealing; the true labelled ratio when that "
                                 "is higher (0 = the ratio: reference).")
    labelled_per_batch: int = _field(
        0, "Every batch carries this many labelled images (the first of the global batch, drawn from the labelled "
        "subset) beside unlabelled ones, so Q_ss sees labels at every step; 0 = the reference's whole labelled "
        "batches drawn with the annealed probability above (which this setting replaces).")
    labelled_shift: int = _field(0, "Augmentation of labelled images: a random translation of up to this many "
                                 "pixels per axis (reflected border); 0 = none (reference).")
    labelled_rotation: float = _field(0.0, "Augmentation of labelled images: also a random rotation of up to this "
                                      "many degrees (bilinear, reflected border); 0 = none (reference).")
    labelled_flip: bool = _field(False, "Augmentation of labelled images: also mirror each left-right with "
                                 "probability 1/2 (natural photos such as CIFAR-10; not for digits).")
    shuffle_seed: int = _field(1, "Seed of the data order.")

    def validate(self) -> None:
        if self.source not in DATA_SOURCES:
            raise ConfigError(f"data source {self.source!r} is not one of {DATA_SOURCES}")
        if self.synthetic_size not in (32, 64):
            raise ConfigError(f"synthetic_size must be 32 or 64, got {self.synthetic_size}")
        if self.synthetic_count < 10:
            raise ConfigError(f"synthetic_count must be >= 10, got {self.synthetic_count}")
        if self.source == "image_folder" and not self.image_dir:
            raise ConfigError("data source 'image_folder' needs image_dir (the folder's root)")
        for name in ("center_crop", "resize_to"):
            v = getattr(self, name)
            if v and (len(v) != 2 or min(v) < 1):
                raise ConfigError(f"{name} must be empty or (height, width) with positive sizes, got {v}")
        unknown = sorted(set(self.measured_labels) - {"slant", "thickness"})
        if unknown:
            raise ConfigError(f"measured_labels {unknown} are not among the measured columns ('slant', 'thickness')")
        if self.channels not in (0, 1, 3):
            raise ConfigError(f"channels must be 0 (as stored), 1 or 3, got {self.channels}")
        if not 0.0 <= self.labelled_fraction <= 1.0:
            raise ConfigError(f"labelled_fraction must be in [0, 1], got {self.labelled_fraction}")
        if self.labelled_count is not None and self.labelled_count < 0:
            raise ConfigError(f"labelled_count must be >= 0, got {self.labelled_count}")
        if self.labelled_selection not in ("random", "balanced"):
            raise ConfigError(f"labelled_selection {self.labelled_selection!r} is not 'random' or 'balanced'")
        if not 0.0 <= self.anneal_start <= 1.0:
            raise ConfigError(f"anneal_start must be in [0, 1], got {self.anneal_start}")
        if self.anneal_decrement < 0:
            raise ConfigError(f"anneal_decrement must be >= 0, got {self.anneal_decrement}")
        if self.anneal_every < 1:
            raise ConfigError(f"anneal_every must be >= 1, got {self.anneal_every}")
        if not 0.0 <= self.anneal_floor <= 1.0:
            raise ConfigError(f"anneal_floor must be in [0, 1], got {self.anneal_floor}")
        if self.labelled_per_batch < 0:
            raise ConfigError(f"labelled_per_batch must be >= 0, got {self.labelled_per_batch}")
        if self.labelled_shift < 0:
            raise ConfigError(f"labelled_shift must be >= 0 pixels, got {self.labelled_shift}")
        if not 0.0 <= self.labelled_rotation <= 180.0:
            raise ConfigError(f"labelled_rotation must be in [0, 180] degrees, got {self.labelled_rotation}")


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
    """The ss-InfoGAN objective's options: loss weights, pseudo-labels, the guide head, instance noise (the model is
    built from this section: `SSInfoGAN(..., objective)`; a new option is a field here and the code that reads it)."""

    ss_weight: float = _field(2.0, "lambda of the semi-supervised code terms (reference: 2.0).")
    us_weight: float = _field(0.8, "lambda of the unsupervised code terms (reference: 0.8).")
    q_ss_fake_weight: float = _field(0.0, "Weight of Q_ss's loss on class-conditioned fakes in the D/Q phase; 0 = "
                                     "reference (Q_ss learns from labelled real images only).")
    adversarial_labelled: bool = _field(
        True, "With --labelled_per_batch: D's real/fake loss also sees the batch's labelled images (as the "
        "reference's labelled batches); --noadversarial_labelled keeps them (and their --labelled_shift "
        "augmentation) for Q_ss only, D learning 'real' from the unlabelled images.")
    guide_head: bool = _field(
        False, "G's semi-supervised code term goes through a second Q_ss head (the guide) that learns only from "
        "the labelled real images, as Q_ss in the reference; the Q_ss head that `classify`, the evaluation and the "
        "export use then takes the pseudo-label, consistency and --q_ss_fake_weight terms alone. Off = one head "
        "(reference).")
    pseudo_label_weight: float = _field(
        0.0, "Weight of Q_ss's loss on its own confident predictions for unlabelled real images (pseudo-labels, "
        "Lee 2013; categorical and binary codes); 0 = off (reference).")
    pseudo_label_threshold: float = _field(0.95, "Confidence (probability of the predicted value) from which an "
                                           "unlabelled real image's prediction is used as its pseudo-label.")
    pseudo_label_shift: float = _field(
        0.0, "With pseudo-labels: > 0 makes them a consistency loss (FixMatch-style): the label from the image, the "
        "loss on a copy shifted by up to this many pixels per axis (one more D pass over the real batch); 0 and "
        "no rotation = the loss on the image itself.")
    pseudo_label_rotation: float = _field(0.0, "With pseudo-labels: the copy is also rotated by up to this many "
                                          "degrees (0 = not rotated).")
    pseudo_label_flip: bool = _field(False, "With pseudo-labels: the copy is also mirrored left-right with "
                                     "probability 1/2 (a consistency loss on its own when shift and rotation are 0).")
    reuse_fakes: bool = _field(True, "The G phase reuses the D phase's latents and generator forward pass (Torch "
                               "DCGAN practice, about 8% fewer FLOPs); --noreuse_fakes draws fresh fakes.")
    # Instance noise (Sonderby et al. 2016): N(0, std_t^2) added to every image D sees; off when 0.
    #   linear:      std_t = instance_noise_std * max(0, 1 - t / instance_noise_anneal_steps)
    #                (instance_noise_anneal_steps = 0: constant std)
    #   exponential: std_t = instance_noise_std * instance_noise_decay ** t (the reference's factor per D step)
    instance_noise_std: float = _field(0.0, "Initial std of the instance noise added to every image D sees (0 = off).")
    instance_noise_schedule: str = _field("linear", "Instance-noise annealing: linear to 0 over "
                                          "--instance_noise_anneal_steps, or times --instance_noise_decay per step.",
                                          choices=INSTANCE_NOISE_SCHEDULES)
    instance_noise_anneal_steps: int = _field(0, "Linear schedule: steps until the std reaches 0 (0 = constant).")
    instance_noise_decay: float = _field(1.0, "Exponential schedule: factor applied to the std each step.")

    def validate(self) -> None:
        if min(self.ss_weight, self.us_weight, self.q_ss_fake_weight, self.pseudo_label_weight) < 0:
            raise ConfigError(f"loss weights must be >= 0, got ss={self.ss_weight} us={self.us_weight} "
                              f"q_ss_fake={self.q_ss_fake_weight} pseudo_label={self.pseudo_label_weight}")
        if not 0.0 <= self.pseudo_label_shift < 100.0:
            raise ConfigError(f"pseudo_label_shift must be in [0, 100) pixels, got {self.pseudo_label_shift}")
        if not 0.0 <= self.pseudo_label_rotation <= 180.0:
            raise ConfigError(f"pseudo_label_rotation must be in [0, 180] degrees, got {self.pseudo_label_rotation}")
        if not 0.5 <= self.pseudo_label_threshold <= 1.0:
            raise ConfigError(f"pseudo_label_threshold must be in [0.5, 1], got {self.pseudo_label_threshold}")
        self.instance_noise.validate()

    @property
    def instance_noise(self) -> "InstanceNoiseConfig":
        return InstanceNoiseConfig(self.instance_noise_std, self.instance_noise_schedule,
                                   self.instance_noise_anneal_steps, self.instance_noise_decay)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation, schedule and run-folder settings."""

    batch_size: int = _field(128, "Global batch size.")
    steps: int = _field(5000, "Total training steps (generator updates).")
    steps_per_epoch: int = _field(100, "Steps per Keras epoch (progress bar, logs).")
    d_learning_rate: float = _field(1e-4, "Adam learning rate of D and Q.")
    g_learning_rate: float = _field(1e-3, "Adam learning rate of G.")
    beta_1: float = _field(0.5, "Adam beta_1.")
    beta_2: float = _field(0.999, "Adam beta_2.")
    d_average: float = _field(
        0.0, "Momentum of an exponential moving average of D/Q's weights (e.g. 0.999), kept by the D optimiser: "
        "the final evaluation, `evaluate`, `export` and the `classify` signature use the averaged weights, training "
        "the raw ones; 0 = off (reference).")
    g_average: float = _field(
        0.0, "Momentum of an exponential moving average of G's weights (e.g. 0.999; Yazici et al. 2019), kept by "
        "the G optimiser: the final evaluation, `evaluate`, `sample` and `export` generate with it, training uses "
        "the raw weights; 0 = off (reference).")
    fused_adam: bool = _field(False, "Adam through TF's fused kernel (the same update as Keras's Adam, about 10% "
                              "faster steps; off by default: it reads Keras internals, and falls back to Keras's "
                              "update where they are missing); off = keras.optimizers.Adam.")
    seed: int = _field(1, "Seed of initialisation and latent sampling.")
    checkpoint_every_epochs: int = _field(5, "Checkpoint period (epochs).")
    checkpoint_every_minutes: float = _field(
        0.0, "Also checkpoint whenever this many minutes passed since the last checkpoint (0 = off); bounds the "
        "work lost to SIGKILL whatever a step costs. SIGTERM/SIGINT always checkpoint the current step and exit "
        "with status 75 (training/preemption.py).")
    max_checkpoints: int = _field(3, "Checkpoints kept.")
    grid_every_epochs: int = _field(5, "Image-grid period (epochs).")
    export_at_end: bool = _field(True, "Export the SavedModel (generator and Q signatures) at the end.")
    strategy: str = _field("default", "tf.distribute strategy: 'default' (one device), 'mirrored', 'multi_worker' "
                           "(reads the cluster from TF_CONFIG).", choices=STRATEGIES)
    loop: str = _field("fit", "Keras fit, or a custom loop over strategy.run (the same train_step; always used "
                       "with multi_worker).", choices=LOOPS)
    jit_compile: bool = _field(False, "XLA-compile the train step.")
    precision: str = _field("float32", "Keras dtype policy of the networks: mixed_float16 (with dynamic loss "
                            "scaling) or mixed_bfloat16 for GPUs and CPUs with fast 16-bit units; losses, variables "
                            "and exports stay float32. auto = mixed_bfloat16 where the CPU (AVX512_BF16, AMX) or "
                            "every GPU (compute capability >= 8.0) has native bfloat16, else float32; decided at "
                            "each start, config.json records the choice.", choices=PRECISIONS)
    verbose: int = _field(1, "Keras fit verbosity (1 = progress bar).")
    eval_every_epochs: int = _field(0, "Evaluate (independent classifier, Frechet distance, information bounds) "
                                    "every N epochs into logs/eval; 0 = off.")
    final_classifier_eval: bool = _field(False, "The final evaluation (eval.json) adds the independent classifier's "
                                         "accuracy on class-conditioned samples (the paper's metric; the classifier "
                                         "is trained and cached on first use, about a minute for MNIST).")
    nan_policy: str = _field("stop", "On a non-finite loss or gradient: stop (naming the step and the term; the "
                             "last checkpoint stays intact) or skip that update (one device only).",
                             choices=NAN_POLICIES)
    deterministic: bool = _field(False, "Enable TF op determinism (slower on GPUs): with the seeds, reruns and "
                                 "resumed runs give identical weights.")
    def validate(self) -> None:
        for name in ("batch_size", "steps", "steps_per_epoch", "checkpoint_every_epochs", "grid_every_epochs",
                     "max_checkpoints"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.steps % self.steps_per_epoch:
            raise ConfigError(
                f"steps ({self.steps}) must be a multiple of steps_per_epoch ({self.steps_per_epoch})"
            )
        if not self.checkpoint_every_minutes >= 0 or self.checkpoint_every_minutes == float("inf"):
            raise ConfigError(f"checkpoint_every_minutes must be a finite number >= 0 (0 = off), got "
                              f"{self.checkpoint_every_minutes}")
        for name in ("d_learning_rate", "g_learning_rate"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("beta_1", "beta_2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("d_average", "g_average"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1) (0 = off), got {getattr(self, name)}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy {self.strategy!r} is not 'default', 'mirrored' or 'multi_worker'")
        if self.nan_policy not in NAN_POLICIES:
            raise ConfigError(f"nan_policy {self.nan_policy!r} is not 'stop' or 'skip'")
        if self.nan_policy == "skip" and self.strategy != "default":
            raise ConfigError("nan_policy 'skip' needs strategy 'default' (a conditional update cannot all-reduce)")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.loop not in LOOPS:
            raise ConfigError(f"loop {self.loop!r} is not 'fit' or 'custom'")


@dataclasses.dataclass(frozen=True)
class InstanceNoiseConfig:
    """The instance-noise schedule (see ObjectiveConfig); `model.instance_noise_stddev` evaluates it."""

    std: float = 0.0
    schedule: str = "linear"
    anneal_steps: int = 0
    decay: float = 1.0

    @property
    def enabled(self) -> bool:
        return self.std > 0.0

    def validate(self) -> None:
        if self.std < 0:
            raise ConfigError(f"instance_noise_std must be >= 0, got {self.std}")
        if self.schedule not in INSTANCE_NOISE_SCHEDULES:
            raise ConfigError(
                f"instance_noise_schedule {self.schedule!r} is not one of {INSTANCE_NOISE_SCHEDULES}")
        if self.anneal_steps < 0:
            raise ConfigError(f"instance_noise_anneal_steps must be >= 0, got {self.anneal_steps}")
        if not 0.0 < self.decay <= 1.0:
            raise ConfigError(f"instance_noise_decay must be in (0, 1], got {self.decay}")


# The judges (evaluation/judges.py): networks, their default epochs, training recipes.
JUDGE_ARCHITECTURES = ("auto", "mnist_cnn", "resnet", "resnet9")
JUDGE_DEFAULT_EPOCHS = {"mnist_cnn": 5, "resnet": 10, "resnet9": 12}
JUDGE_RECIPES = ("auto", "paper", "train_split")


@dataclasses.dataclass(frozen=True)
class JudgeConfig:
    """How the independent judges (classifiers) of the evaluations are built, trained and found (used by training's
    final and periodic evaluations and by `evaluate`)."""

    architecture: str = _field("auto", "Judge network: auto = mnist_cnn for 28x28x1 images (the paper's CNN), "
                               "resnet (small residual CNN) otherwise.", flag="judge_architecture",
                               choices=JUDGE_ARCHITECTURES)
    epochs: int = _field(0, "Epochs of a judge trained now (first use); 0 = the architecture's default (the "
                         "paper's CNN: 5).", flag="judge_epochs")
    augment: bool = _field(False, "Judges trained now learn from shifted and rotated copies of the test split (with "
                           "--judge_epochs=30 on MNIST: 98.7% on the train split against 97.2%; cached apart from the "
                           "default one).", flag="judge_augment")
    classifier_path: str = _field("", "Judge (.keras) of the first categorical code; empty = the default cache path "
                                  "(trained on first use, see tf_ssinfogan.train_classifier).")
    batch_size: int = _field(128, "Training batch size.", flag=None)
    seed: int = _field(0, "Seed of its training.", flag=None)
    learning_rate: float = _field(1e-3, "Adam learning rate.", flag=None)
    recipe: str = _field("auto", "'paper', 'train_split' or 'auto' (evaluation/judges.py).", flag=None)

    def tag(self, architecture: str, recipe: str = "paper") -> str:
        """'' for the paper's recipe with its default epochs, else a suffix naming what differs ('_e30_aug',
        '_trainsplit'): judges trained differently are cached apart. `augment` (shifts and rotations of the test
        split) belongs to the paper's recipe; 'train_split' has its own crops and flips."""
        parts = ["trainsplit"] if recipe == "train_split" else []
        if self.epochs and self.epochs != JUDGE_DEFAULT_EPOCHS[architecture]:
            parts.append(f"e{self.epochs}")
        if self.augment and recipe != "train_split":
            parts.append("aug")
        return "".join("_" + p for p in parts)

    def validate(self) -> None:
        if self.architecture not in JUDGE_ARCHITECTURES:
            raise ConfigError(f"judge architecture {self.architecture!r} is not one of {JUDGE_ARCHITECTURES}")
        if self.recipe not in JUDGE_RECIPES:
            raise ConfigError(f"judge recipe {self.recipe!r} is not one of {JUDGE_RECIPES}")
        if self.epochs < 0 or self.batch_size < 1:
            raise ConfigError(f"judge epochs must be >= 0 and batch_size >= 1, got {self.epochs}, {self.batch_size}")


METRICS = ("codes", "judge_fd", "info", "fid", "kid", "is")
OFFLINE_METRICS = ("codes", "judge_fd", "info")
INCEPTION_METRICS = ("fid", "kid", "is")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """What one evaluation computes and with how many samples (`evaluation/report.py`; the `evaluate` command's
    flags)."""

    metrics: Tuple[str, ...] = _field(
        OFFLINE_METRICS, "Metrics: codes (judges and Q per code), judge_fd (Frechet distance in a judge's features, "
        "offline), info (information bounds), fid, kid, is (InceptionV3, ImageNet weights), or 'all'.")
    per_class: int = _field(128, "Samples per value of a categorical code, or per bit value of a binary code "
                            "(paper: 128).")
    continuous_samples: int = _field(1000, "Samples for the correlation of a continuous code.")
    judge_fd_samples: int = _field(2000, "Real and generated images for the judge-feature Frechet distance.",
                                   aliases=("fid_samples",))
    num_samples: int = _field(10000, "Generated images (and real test images, at most the split) for FID, KID and "
                              "IS.")
    kid_subsets: int = _field(100, "KID: number of random subsets.")
    kid_subset_size: int = _field(1000, "KID: images per subset.")
    is_splits: int = _field(10, "Inception Score: number of splits.")
    inception_weights: str = _field("", "InceptionV3 weights .h5 file (Keras's ImageNet file; the variant with the "
                                    "head is needed for IS); empty = the Keras cache (~/.keras/models).")
    seed: int = _field(0, "Seed of the samples.", flag=None)

    def validate(self) -> "EvalConfig":
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown or not self.metrics:
            raise ConfigError(f"metrics {list(self.metrics)}: each must be one of {', '.join(METRICS)}")
        for name in ("per_class", "continuous_samples", "judge_fd_samples", "kid_subsets", "is_splits"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("num_samples", "kid_subset_size"):
            if getattr(self, name) < 2:
                raise ConfigError(f"{name} must be >= 2, got {getattr(self, name)}")
        return self

    @property
    def needs_inception(self) -> bool:
        return any(m in INCEPTION_METRICS for m in self.metrics)


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything one run needs."""

    run_dir: str = _field("runs/mnist", "Run folder: config, checkpoints, logs, grids, export. Reused = resume.")
    latent: LatentConfig = LatentConfig()
    network: NetworkConfig = NetworkConfig()
    data: DataConfig = DataConfig()
    objective: ObjectiveConfig = ObjectiveConfig()
    judge: JudgeConfig = JudgeConfig()
    train: TrainConfig = TrainConfig()

    def validate(self) -> "ExperimentConfig":
        if not self.run_dir:
            raise ConfigError("run_dir must be set")
        self.latent.validate()
        self.network.validate()
        self.data.validate()
        self.objective.validate()
        self.judge.validate()
        self.train.validate()
        if self.data.labelled_per_batch >= self.train.batch_size:
            raise ConfigError(f"labelled_per_batch ({self.data.labelled_per_batch}) must be smaller than "
                              f"batch_size ({self.train.batch_size}): the rest of the batch is unlabelled images")
        no_labels = self.data.labelled_count == 0 or (self.data.labelled_count is None
                                                      and self.data.labelled_fraction == 0.0)
        if self.objective.guide_head and (no_labels or not self.latent.semi_supervised_codes):
            raise ConfigError("--guide_head needs labelled images and a semi-supervised code (the guide head learns "
                              "only from the labelled images); this configuration has none (plain InfoGAN)")
        return self

    def supervision_warning(self) -> Optional[str]:
        """A warning when continuous or binary semi-supervised codes would lose their supervision: with the
        reference's annealed whole labelled batches and a small labelled ratio, labelled batches all but stop after
        about 1,000 steps, and unbounded regression heads then drift (measured on sprites); None otherwise."""
        ss = [c for c in self.latent.semi_supervised_codes if c.kind in ("continuous", "binary")]
        if not ss or self.data.labelled_per_batch or self.data.anneal_floor >= 0.1:
            return None
        return (f"the semi-supervised code(s) {', '.join(c.name for c in ss)} are {ss[0].kind} and learn only while "
                "labelled batches come: with the annealed labelled draws they nearly stop after about 1,000 steps "
                "and the codes drift; --labelled_per_batch=16 (as configs/sprites.flags) keeps labelled images in "
                "every batch")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["latent"]["codes"] = format_codes(self.latent.codes)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "ExperimentConfig":
        """The inverse of `to_dict`; also reads older layouts (see `_lift_old_layout`)."""
        d = _lift_old_layout(d)
        lat = dict(d["latent"])
        codes = lat.pop("codes")
        lat["codes"] = parse_codes(codes) if isinstance(codes, str) else tuple(CodeSpec(**c) for c in codes)
        net = dict(d["network"])
        net["image_shape"] = tuple(net["image_shape"])
        data = dict(d["data"])
        for key in ("center_crop", "resize_to", "measured_labels"):
            if key in data:
                data[key] = tuple(data[key] or ())
        return cls(
            run_dir=d["run_dir"],
            latent=LatentConfig(**lat),
            network=NetworkConfig(**net),
            data=DataConfig(**data),
            objective=ObjectiveConfig(**d["objective"]),
            judge=JudgeConfig(**d["judge"]),
            train=TrainConfig(**d["train"]),
        )


def _lift_old_layout(d: dict) -> dict:
    """A config.json of an older layout in today's: until e14526b the objective's and the judges' options were
    fields of 'train' (the judges' under their flag names)."""
    if "objective" in d:
        return d
    train = dict(d["train"])
    objective = {f.name: train.pop(f.name) for f in dataclasses.fields(ObjectiveConfig) if f.name in train}
    judge = {f.name: train.pop(f.metadata["flag"] if "flag" in f.metadata else f.name)
             for f in dataclasses.fields(JudgeConfig) if f.metadata.get("flag", f.name) in train}
    return {**d, "train": train, "objective": objective, "judge": judge}
