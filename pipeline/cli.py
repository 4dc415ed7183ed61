"""The `textxfer` command line.

Each subcommand imports TensorFlow and TFX inside its handler, so `textxfer --help` and
config errors come back in well under a second.
"""

from __future__ import annotations

import argparse
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

    print(format_predictions(predict(args.model, args.texts, text_pairs=args.pair)))
    return 0


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

    return parser


def main(argv=None) -> int:
    configure_environment()
    args = build_parser().parse_args(argv)
    from pipeline.config import ConfigError

    try:
        return args.handler(args)
    except ConfigError as error:
        print(f"textxfer: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
