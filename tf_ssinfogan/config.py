"""Typed, validated configuration for tf_ssinfogan (frozen dataclasses, no absl).

The CLIs turn flags into these objects; every library function takes them. Tests build and edit them with
`dataclasses.replace`. `validate()` raises `ConfigError` with a message naming the offending field.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Optional, Tuple

CODE_KINDS = ("categorical", "continuous", "binary")
_KIND_ALIASES = {
    "cat": "categorical",
    "categorical": "categorical",
    "cont": "continuous",
    "continuous": "continuous",
    "uniform": "continuous",
    "bin": "binary",
    "binary": "binary",
}


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the value."""


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
        if self.kind == "categorical" and self.dim < 2:
            raise ConfigError(f"code {self.name!r}: a categorical code needs at least 2 values, got {self.dim}")


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
    short = {"categorical": "cat", "continuous": "cont", "binary": "bin"}
    out = []
    for c in codes:
        s = f"{c.name}:{short[c.kind]}:{c.dim}"
        if c.label:
            s += f":{c.label}"
        out.append(s)
    return ",".join(out)


@dataclasses.dataclass(frozen=True)
class LatentConfig:
    """Noise z plus named codes (InfoGAN's c, split into c_ss and c_us)."""

    noise_dim: int = 62
    noise_distribution: str = "normal"  # 'normal' N(0,1) (ss-InfoGAN reference) or 'uniform' U(-1,1) (InfoGAN)
    codes: Tuple[CodeSpec, ...] = (
        CodeSpec("digit", "categorical", 10, "label"),
        CodeSpec("c1", "continuous", 1),
        CodeSpec("c2", "continuous", 1),
    )

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


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Architecture choice and its knobs (see networks.py)."""

    architecture: str = "mnist"  # 'mnist' (ss-InfoGAN reference, 28x28); 'infogan32', 'dcgan32' (32x32)
    image_shape: Tuple[int, int, int] = (28, 28, 1)
    leaky_relu_slope: float = 0.01  # reference code; the InfoGAN paper uses 0.1
    init_stddev: float = 0.02
    output_activation: str = "sigmoid"  # 'sigmoid' -> data in [0, 1]; 'tanh' -> data in [-1, 1]
    sync_batch_norm: bool = False  # BN statistics over the global batch under a multi-replica strategy

    def validate(self) -> None:
        from tf_ssinfogan import networks  # local import: networks imports config

        if self.architecture not in networks.ARCHITECTURES:
            raise ConfigError(
                f"architecture {self.architecture!r} is not one of {sorted(networks.ARCHITECTURES)}"
            )
        if len(self.image_shape) != 3 or min(self.image_shape) < 1:
            raise ConfigError(f"image_shape must be (height, width, channels), got {self.image_shape}")
        if self.output_activation not in ("sigmoid", "tanh"):
            raise ConfigError(f"output_activation {self.output_activation!r} is not 'sigmoid' or 'tanh'")
        networks.ARCHITECTURES[self.architecture].check_image_shape(self.image_shape)

    @property
    def data_range(self) -> Tuple[float, float]:
        return (0.0, 1.0) if self.output_activation == "sigmoid" else (-1.0, 1.0)


DATA_SOURCES = ("npz", "tfds", "image_folder")
INSTANCE_NOISE_SCHEDULES = ("linear", "exponential")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the images and labels come from and how the labelled subset is drawn."""

    source: str = "npz"  # 'npz' (arrays in a .npz file), 'tfds' (a TFDS dataset by name), 'image_folder'
    npz_path: str = ""  # '' means the MNIST shipped with the package
    image_dir: str = ""  # root of an image folder: labelled/<class>/*, unlabelled/*, optional test/<class>/*
    tfds_name: str = "mnist"
    tfds_data_dir: Optional[str] = None
    tfds_download: bool = True
    train_split: str = "train"
    test_split: str = "test"
    # Image preprocessing at load time (tfds and image_folder): a centred crop (height, width) first, then a
    # resize to (height, width); () = none. channels: 0 = as stored, 1 or 3 = convert (image folders: the
    # colour mode to decode to; 0 there means 3).
    center_crop: Tuple[int, ...] = ()
    resize_to: Tuple[int, ...] = ()
    channels: int = 0
    labelled_fraction: float = 0.01  # used when labelled_count is None; 1.0 = every labelled example
    labelled_count: Optional[int] = None
    labelled_selection: str = "random"  # 'random' (reference) or 'balanced' (equal count per class)
    label_seed: int = 1234
    # Labelled-draw annealing (reference): P(labelled batch) starts at 1.0 and falls by anneal_decrement
    # every anneal_every updates, floored at the true labelled ratio.
    anneal_start: float = 1.0
    anneal_decrement: float = 0.1
    anneal_every: int = 100
    shuffle_seed: int = 1

    def validate(self) -> None:
        if self.source not in DATA_SOURCES:
            raise ConfigError(f"data source {self.source!r} is not one of {DATA_SOURCES}")
        if self.source == "image_folder" and not self.image_dir:
            raise ConfigError("data source 'image_folder' needs image_dir (the folder's root)")
        for name in ("center_crop", "resize_to"):
            v = getattr(self, name)
            if v and (len(v) != 2 or min(v) < 1):
                raise ConfigError(f"{name} must be empty or (height, width) with positive sizes, got {v}")
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


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation, schedule and run-folder settings."""

    batch_size: int = 128  # global batch size
    steps: int = 5000
    steps_per_epoch: int = 100
    d_learning_rate: float = 1e-4
    g_learning_rate: float = 1e-3
    beta_1: float = 0.5
    beta_2: float = 0.999
    ss_weight: float = 2.0  # lambda for semi-supervised codes (reference)
    us_weight: float = 0.8  # lambda for unsupervised codes (reference)
    q_ss_fake_weight: float = 0.0  # Q_ss loss on fakes in the D/Q phase; 0 = reference (labelled reals only)
    # The G phase reuses the D phase's latents and G forward pass (the Torch DCGAN/ss-InfoGAN practice),
    # about 8% fewer FLOPs per step; False draws fresh fakes for the G phase.
    reuse_fakes: bool = True
    # Adam through TF's fused ResourceApplyAdam kernel (same update as keras.optimizers.Adam, about 10% faster
    # steps); off by default: it reads Keras internals (falls back to Keras's update where they are missing)
    fused_adam: bool = False
    seed: int = 1
    checkpoint_every_epochs: int = 5
    max_checkpoints: int = 3
    grid_every_epochs: int = 5
    export_at_end: bool = True
    strategy: str = "default"  # 'default' (one device), 'mirrored', 'multi_worker' (TF_CONFIG)
    loop: str = "fit"  # 'fit' (Keras) or 'custom' (strategy.run over the same train_step; forced for multi_worker)
    jit_compile: bool = False
    # Keras dtype policy of the networks: 'float32', 'mixed_bfloat16' or 'mixed_float16' (dynamic loss scaling;
    # for GPUs). Variables, losses and the D/Q outputs stay float32; exports are always float32.
    precision: str = "float32"
    verbose: int = 1
    # Evaluation during training (convergence curves): every N epochs, 0 = off. The independent classifier
    # is loaded from classifier_path ('' = the default cache path, trained on first use).
    eval_every_epochs: int = 0
    # The final evaluation (eval.json) adds the independent classifier's accuracy on class-conditioned samples
    # (the paper's metric; the classifier is trained and cached on first use, about a minute for MNIST).
    final_classifier_eval: bool = False
    nan_policy: str = "stop"  # 'stop' at the first non-finite loss, or 'skip' such updates (one device only)
    deterministic: bool = False  # TF op determinism (with the seeds: bit-identical reruns on one machine)
    classifier_path: str = ""
    # Instance noise (Sonderby et al. 2016): N(0, std_t^2) added to every image D sees; off when 0.
    #   linear:      std_t = instance_noise_std * max(0, 1 - t / instance_noise_anneal_steps)
    #                (instance_noise_anneal_steps = 0: constant std)
    #   exponential: std_t = instance_noise_std * instance_noise_decay ** t (the reference's factor per D step)
    instance_noise_std: float = 0.0
    instance_noise_schedule: str = "linear"
    instance_noise_anneal_steps: int = 0
    instance_noise_decay: float = 1.0

    def validate(self) -> None:
        for name in ("batch_size", "steps", "steps_per_epoch", "checkpoint_every_epochs", "grid_every_epochs",
                     "max_checkpoints"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.steps % self.steps_per_epoch:
            raise ConfigError(
                f"steps ({self.steps}) must be a multiple of steps_per_epoch ({self.steps_per_epoch})"
            )
        for name in ("d_learning_rate", "g_learning_rate"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("beta_1", "beta_2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.ss_weight < 0 or self.us_weight < 0 or self.q_ss_fake_weight < 0:
            raise ConfigError(f"loss weights must be >= 0, got ss={self.ss_weight} us={self.us_weight}")
        if self.strategy not in ("default", "mirrored", "multi_worker"):
            raise ConfigError(f"strategy {self.strategy!r} is not 'default', 'mirrored' or 'multi_worker'")
        if self.nan_policy not in ("stop", "skip"):
            raise ConfigError(f"nan_policy {self.nan_policy!r} is not 'stop' or 'skip'")
        if self.nan_policy == "skip" and self.strategy != "default":
            raise ConfigError("nan_policy 'skip' needs strategy 'default' (a conditional update cannot all-reduce)")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.loop not in ("fit", "custom"):
            raise ConfigError(f"loop {self.loop!r} is not 'fit' or 'custom'")
        self.instance_noise.validate()

    @property
    def instance_noise(self) -> "InstanceNoiseConfig":
        return InstanceNoiseConfig(self.instance_noise_std, self.instance_noise_schedule,
                                   self.instance_noise_anneal_steps, self.instance_noise_decay)


@dataclasses.dataclass(frozen=True)
class InstanceNoiseConfig:
    """The instance-noise schedule (see TrainConfig); `model.instance_noise_stddev` evaluates it."""

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


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything one run needs."""

    run_dir: str = "runs/mnist"
    latent: LatentConfig = LatentConfig()
    network: NetworkConfig = NetworkConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()

    def validate(self) -> "ExperimentConfig":
        if not self.run_dir:
            raise ConfigError("run_dir must be set")
        self.latent.validate()
        self.network.validate()
        self.data.validate()
        self.train.validate()
        return self

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["latent"]["codes"] = format_codes(self.latent.codes)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "ExperimentConfig":
        lat = dict(d["latent"])
        codes = lat.pop("codes")
        lat["codes"] = parse_codes(codes) if isinstance(codes, str) else tuple(CodeSpec(**c) for c in codes)
        net = dict(d["network"])
        net["image_shape"] = tuple(net["image_shape"])
        data = dict(d["data"])
        for key in ("center_crop", "resize_to"):
            if key in data:
                data[key] = tuple(data[key] or ())
        return cls(
            run_dir=d["run_dir"],
            latent=LatentConfig(**lat),
            network=NetworkConfig(**net),
            data=DataConfig(**data),
            train=TrainConfig(**d["train"]),
        )
