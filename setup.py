"""tf_ssinfogan: semi-supervised InfoGAN (Spurr et al., ECML 2017) and InfoGAN with TensorFlow 2 / Keras 3."""

import os

from setuptools import find_packages, setup

# Compatible ranges: the package installs beside other TensorFlow 2.20/2.21 stacks. The versions verified
# together (fresh virtualenvs, Python 3.11, 3.12 and 3.13) are pinned in constraints.txt, which the README and
# .ci/run install with; .ci/run also checks that pip resolves both ends of the TensorFlow range.
INSTALL_REQUIRES = [
    "tensorflow>=2.20,<2.22",
    "keras>=3.10,<4",
    "tensorflow-probability[tf]>=0.25,<0.26",  # the [tf] extra brings tf-keras, without which TFP does not import
    "tensorflow-datasets>=4.9.9,<5",
    "importlib_resources>=6",  # imported by tensorflow-datasets 4.9.x, which does not declare it
    "tensorboard>=2.20,<2.22",  # tf.summary needs it; TF 2.21 no longer depends on it
    "absl-py>=2.1,<3",
    "numpy>=1.26,<3",
    "scipy>=1.13,<2",
    "pillow>=10",  # image-folder source
]
EXTRAS = {
    "litert": ["ai-edge-litert>=2.1,<3"],  # --tflite parity checks and sampling from .tflite models
    "plots": ["matplotlib>=3.8,<4"],  # scripts/plot_eval_history.py
    "serving": ["tensorflow-serving-api>=2.20,<2.22"],  # export/grpc_request.py (the gRPC client)
}
EXTRAS["all"] = sorted({r for reqs in EXTRAS.values() for r in reqs})
EXTRAS["test"] = EXTRAS["litert"] + EXTRAS["serving"] + ["pytest>=8,<10",
                                                       "selenium>=4.20,<5"]  # the explorer's browser test

CONSOLE_SCRIPTS = [
    "tf-ssinfogan-train = tf_ssinfogan.train:run",
    "tf-ssinfogan-evaluate = tf_ssinfogan.evaluate:run",
    "tf-ssinfogan-export = tf_ssinfogan.export:run",
    "tf-ssinfogan-sample = tf_ssinfogan.sample:run",
    "tf-ssinfogan-train-classifier = tf_ssinfogan.train_classifier:run",
    "tf-ssinfogan-explore = tf_ssinfogan.explore:run",
]

setup(
    name="tf_ssinfogan",
    version="0.1.0",
    description=__doc__,
    long_description=open("README.md").read() if os.path.exists("README.md") else __doc__,
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tf_ssinfogan", "tf_ssinfogan.*"]),
    package_data={"tf_ssinfogan": ["data_files/*.npz", "data_files/*.md", "explore_files/*.html"]},
    include_package_data=True,
    python_requires=">=3.11,<3.14",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
    license="Apache-2.0",
    license_files=["LICENSE"],
)
