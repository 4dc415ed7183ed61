"""Container entrypoint of every textxfer task on Kubeflow: TFX's V2 run executor in this project's environment.

It sets the process environment before TensorFlow loads (Keras 2 for `hub.KerasLayer`) and
registers the tensorflow-text ops, without which the Evaluator cannot load a SavedModel that
tokenizes inside its graph. The arguments are those of
`tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor`.
"""

import runpy
import sys
import types

from pipeline.environment import configure_environment

TFX_RUN_EXECUTOR = "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"


def custom_artifact_types() -> list:
    """Return this project's artifact classes that are not TFX standard types."""
    from components.anomaly_gate import ValidatedStatistics  # pylint: disable=import-outside-toplevel
    from components.report import ReportHTML  # pylint: disable=import-outside-toplevel
    from components.text_statistics import TextStatistics  # pylint: disable=import-outside-toplevel

    return [ValidatedStatistics, TextStatistics, ReportHTML]


def register_custom_artifact_types(artifact_classes=None) -> None:
    """Make each custom artifact class importable under its type name, e.g. `system.HTML`.

    TFX 1.16's V2 entrypoint rebuilds a custom-typed input or output by importing the schema
    title, which its compiler sets to the class's TYPE_NAME, as a class path
    (`kubeflow_v2_entrypoint_utils._retrieve_class_path`). A type name is `namespace.Name`,
    not a module path, so each namespace gets a module in `sys.modules` holding its classes.
    """
    for artifact_class in artifact_classes if artifact_classes is not None else custom_artifact_types():
        module_name, _, class_name = artifact_class.TYPE_NAME.rpartition(".")
        module = sys.modules.get(module_name)
        if module is None:
            module = types.ModuleType(module_name, f"Custom artifact types named {module_name}.*")
            sys.modules[module_name] = module
        setattr(module, class_name, artifact_class)


def main() -> None:
    """Run TFX's Kubeflow V2 executor module as `__main__` with the current `sys.argv`."""
    configure_environment()
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops used by the trained model)

    register_custom_artifact_types()
    runpy.run_module(TFX_RUN_EXECUTOR, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
