"""tf_ssinfogan: semi-supervised InfoGAN (Spurr et al., ECML 2017) and InfoGAN with TensorFlow 2 / Keras 3.

Entry points: `python -m tf_ssinfogan.train`, `.evaluate`, `.train_classifier`, `.export`, `.sample`.
Library, packages by stage with imports pointing one way: `config` (typed configuration) -> `model/` (`losses`,
`latents`, `images`, `networks`, `optimizers`, `ssinfogan.SSInfoGAN`) -> `data/` (sources, the training stream) ->
`rundir/` (paths, checkpoints) -> `evaluation/` (`report.evaluate`), `serving/` (SavedModel, TFLite, model card,
explorer) -> `training/` (`trainer.train`) -> the commands. Importing the package loads nothing heavy.
"""

__version__ = "0.1.0"
