"""Packaging for textxfer. Install the pinned stack first (`make install` does both)."""

import setuptools

setuptools.setup(
    name="textxfer",
    version="0.1.0",
    description="TFX pipeline for transfer-learning text classification, local and on Kubeflow",
    python_requires=">=3.9",
    packages=setuptools.find_packages(include=["pipeline", "pipeline.*", "components", "components.*"]),
    package_data={"pipeline": ["*.yaml"], "components": ["*.pbtxt"]},
    # Dependencies are pinned in requirements.lock and installed by `make install`; listing
    # them here would make pip resolve the google-cloud-* tree for minutes.
    install_requires=[],
    entry_points={"console_scripts": ["textxfer = pipeline.cli:main"]},
)
