"""tf_ssinfogan: semi-supervised InfoGAN (Spurr et al., ECML 2017) and InfoGAN with TensorFlow 2 / Keras 3."""

from setuptools import find_packages, setup

# Versions verified together on Python 3.11 (see README, "Environment"): TensorFlow 2.21 with Keras 3.15,
# TFP 0.25 (needs tf-keras to import), TFDS 4.9.10 (needs importlib_resources, which it does not declare).
INSTALL_REQUIRES = [
    "tensorflow==2.21.0",
    "keras==3.15.1",
    "tf-keras==2.21.0",
    "tensorflow-probability==0.25.0",
    "tensorflow-datasets==4.9.10",
    "importlib_resources==7.1.0",
    "tensorboard==2.21.0",
    "absl-py==2.5.1",
    "numpy==2.4.6",
    "scipy==1.17.1",
    "matplotlib==3.11.2",
    "ai-edge-litert==2.3.0",
]

setup(
    name="tf_ssinfogan",
    version="0.1.0",
    description=__doc__,
    long_description=open("README.md").read() if __import__("os").path.exists("README.md") else __doc__,
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tf_ssinfogan", "tf_ssinfogan.*"]),
    package_data={"tf_ssinfogan": ["data_files/*.npz", "data_files/*.md"]},
    include_package_data=True,
    python_requires=">=3.10,<3.13",
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": ["pytest==9.0.3", "tensorflow-serving-api==2.21.0"]},
    license="Apache-2.0",
)
