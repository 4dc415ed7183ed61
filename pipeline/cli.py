"""The `textxfer` command line.

Each subcommand imports TensorFlow and TFX inside its handler, so `textxfer --help` and
config errors come back in well under a second.
"""

from __future__ import annotations

import argparse
import os
import sys

from pipeline.environment import configure_environment


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="experiment YAML file, e.g. configs/sst2.yaml")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set training.batch_size=16 (repeatable)",
    )


def _load_config(args):
    from pipeline.config import load_config

    overrides = list(args.overrides)
    if getattr(args, "output_dir", None):
        overrides.append(f"output.dir={args.output_dir}")
    if getattr(args, "runner", None):
        overrides.append(f"runner.kind={args.runner}")
    if getattr(args, "backbone", None):
        overrides.append(f"backbone.handle={args.backbone}")
    return load_config(args.config, overrides)


def _run(args) -> int:
    config = _load_config(args)
    from pipeline import local_runner

    result = local_runner.run(config, data_mirror=args.data_mirror)
    return 0 if result.succeeded else 1


def _export_backbone(args) -> int:
    from components.backbone.export import export_backbone

    info = export_backbone(args.source, args.target, overwrite=args.overwrite)
    print(
        f"exported {args.source} to {info.path}: {info.num_layers} layers, hidden size "
        f"{info.hidden_size}, vocabulary {info.vocab_size}, lower-case {info.do_lower_case}"
    )
    return 0


def _predict(args) -> int:
    from pipeline.predict import format_predictions, predict

    try:
        predictions = predict(args.model, args.texts, text_pairs=args.pair)
    except ValueError as error:  # A pair given to a single-text model, or the reverse.
        print(f"textxfer: {error}", file=sys.stderr)
        return 2
    print(format_predictions(predictions))
    return 0


def _default_package(config) -> str:
    return os.path.join("kubeflow", "pipelines", f"{config.name}.yaml")


def _compile(args) -> int:
    config = _load_config(args)
    from pipeline.kubeflow_runner import compile_pipeline

    output = args.output or _default_package(config)
    spec = compile_pipeline(config, output)
    print(f"compiled {len(spec['root']['dag']['tasks'])} tasks to {output}")
    return 0


def _submit_or_schedule(args) -> int:
    config = _load_config(args)
    from pipeline import kfp_client

    package = args.package or _default_package(config)
    if not os.path.isfile(package):
        print(
            f"textxfer: compiled pipeline not found: {package}; create it with "
            f"`textxfer compile --config {args.config} --output {package}`",
            file=sys.stderr,
        )
        return 2
    try:
        parameters = kfp_client.parse_parameters(package, args.params)
        client = kfp_client.connect(config.kubeflow, host=args.host) if config.kubeflow else None
        if args.command == "schedule":
            result = kfp_client.schedule_run(
                config, package, args.cron, client=client, parameters=parameters,
                max_concurrency=args.max_concurrency, name=args.name,
            )
            print(f"recurring run {result.recurring_run_id} in experiment {result.experiment_id}")
        else:
            result = kfp_client.submit_run(config, package, client=client, parameters=parameters, run_name=args.name)
            print(f"run {result.run_id} in experiment {result.experiment_id}")
    except (ValueError, FileNotFoundError) as error:
        print(f"textxfer: {error}", file=sys.stderr)
        return 2
    return 0


def _add_kubeflow_subcommands(subparsers) -> None:
    compile_parser = subparsers.add_parser(
        "compile", help="compile the pipeline into a Kubeflow Pipelines v2 spec (YAML)"
    )
    _add_config_arguments(compile_parser)
    compile_parser.add_argument("--output", help="output file (default: kubeflow/pipelines/NAME.yaml)")
    compile_parser.set_defaults(handler=_compile)

    for command, help_text in (
        ("submit", "upload the compiled pipeline to Kubeflow and start one run"),
        ("schedule", "upload the compiled pipeline to Kubeflow and create a recurring run"),
    ):
        parser = subparsers.add_parser(command, help=help_text)
        _add_config_arguments(parser)
        parser.add_argument("--package", help="compiled pipeline (default: kubeflow/pipelines/NAME.yaml)")
        parser.add_argument("--host", help="KFP API endpoint (default: kubeflow.host)")
        parser.add_argument(
            "--param", dest="params", action="append", default=[], metavar="NAME=VALUE",
            help="runtime parameter, e.g. --param learning_rate=3e-5 (repeatable)",
        )
        parser.add_argument("--name", help="display name of the run or recurring run")
        if command == "schedule":
            parser.add_argument(
                "--cron", required=True,
                help="schedule, 5 fields (minute hour day month weekday) or 6 with seconds first",
            )
            parser.add_argument(
                "--max-concurrency", type=int,
                help="runs allowed at once (default: kubeflow.max_concurrency, 1)",
            )
        parser.set_defaults(handler=_submit_or_schedule)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="textxfer",
        description="Transfer-learning text classification with TFX, locally and on Kubeflow.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)

    run = subparsers.add_parser("run", help="run the whole pipeline locally")
    _add_config_arguments(run)
    run.add_argument(
        "--data-mirror",
        help="offline mirror directory for named datasets (default: $TEXTXFER_DATA_MIRROR)",
    )
    run.add_argument("--runner", choices=["beam", "local"], help="TFX orchestrator (default: from config)")
    run.add_argument("--output-dir", help="directory for pipeline root, ML Metadata and pushed models")
    run.add_argument("--backbone", help="backbone handle: TF Hub URL, gs:// path or local SavedModel")
    run.set_defaults(handler=_run)

    export = subparsers.add_parser(
        "export-backbone", help="convert a BERT-family checkpoint into a TF Hub SavedModel"
    )
    export.add_argument(
        "--from", dest="source", required=True,
        help="checkpoint directory (config.json, model.safetensors, vocab.txt) or 'minilm'",
    )
    export.add_argument("--to", dest="target", required=True, help="output directory of the SavedModel")
    export.add_argument("--overwrite", action="store_true", help="replace an existing export")
    export.set_defaults(handler=_export_backbone)

    predict = subparsers.add_parser("predict", help="classify raw texts with a pushed model")
    predict.add_argument("--model", required=True, help="pushed model directory (a SavedModel)")
    predict.add_argument("--pair", action="append", help="second text of a pair, once per text")
    predict.add_argument("texts", nargs="+", help="texts to classify")
    predict.set_defaults(handler=_predict)

    _add_kubeflow_subcommands(subparsers)

    return parser


def main(argv=None) -> int:
    configure_environment()
    args = build_parser().parse_args(argv)
    from components.backbone.loading import BackboneInterfaceError
    from pipeline.config import ConfigError
    from pipeline.datasets import DatasetError

    # Errors in what the user passed (config, paths, data, backbone) get one line, no
    # traceback. Failures inside a pipeline run are summarised by the runner, with the
    # traceback in its run.log.
    user_errors = (ConfigError, DatasetError, BackboneInterfaceError, FileNotFoundError, FileExistsError)
    try:
        return args.handler(args)
    except user_errors as error:
        print(f"textxfer: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
