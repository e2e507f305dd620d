"""tf_ssinfogan: semi-supervised InfoGAN (Spurr et al., ECML 2017) and InfoGAN with TensorFlow 2 / Keras 3.

Entry points: `python -m tf_ssinfogan.train`, `.evaluate`, `.train_classifier`, `.export`, `.sample`.
Library: `config` (typed configuration) -> `latents`, `data`, `networks`, `losses` -> `model.SSInfoGAN` ->
`callbacks`, `evaluation`, `serving`, `tflite` -> `training.train`. Importing the package loads nothing heavy.
"""

__version__ = "0.1.0"
