"""Container entrypoint of every textxfer task on Kubeflow: TFX's V2 run executor in this project's environment.

It sets the process environment before TensorFlow loads (Keras 2 for `hub.KerasLayer`) and
registers the tensorflow-text ops, without which the Evaluator cannot load a SavedModel that
tokenizes inside its graph. The arguments are those of
`tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor`.
"""

import runpy

from pipeline.environment import configure_environment

TFX_RUN_EXECUTOR = "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"


def main() -> None:
    """Run TFX's Kubeflow V2 executor module as `__main__` with the current `sys.argv`."""
    configure_environment()
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops used by the trained model)

    runpy.run_module(TFX_RUN_EXECUTOR, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
