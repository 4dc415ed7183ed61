"""Process environment that the TFX 1.16 stack needs, set before TensorFlow is imported."""

import os
import warnings


def configure_environment() -> None:
    """Set the variables that every textxfer process needs before TensorFlow loads.

    TF_USE_LEGACY_KERAS makes `tf.keras` resolve to tf_keras (Keras 2), which
    `hub.KerasLayer`, TFT and TFMA 0.47 need; under Keras 3 hub layers fail with a
    KerasTensor error.
    """
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

    # google-api-core and google-auth warn about Python 3.11 and grpcio support dates on every
    # import. The warnings concern the Google client libraries, not this project's use of them.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.")
