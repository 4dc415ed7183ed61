"""Time `export_backbone` on a BERT checkpoint (default: the built-in MiniLM).

Usage: .venv/bin/python bench/export_backbone.py [--source minilm] [--repeats 3]

Prints the time of TensorFlow's first import and of each export (read safetensors, build,
trace, save, reload to check the interface), each into a fresh temporary folder.
"""

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pipeline.environment import configure_environment  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="minilm",
                        help="'minilm' or a Hugging Face BERT checkpoint directory")
    parser.add_argument("--repeats", type=int, default=3, help="number of timed exports")
    args = parser.parse_args()

    configure_environment()
    started = time.perf_counter()
    import tensorflow  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    import tensorflow_hub  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    import_seconds = time.perf_counter() - started

    from components.backbone.export import export_backbone  # pylint: disable=import-outside-toplevel

    timings = []
    info = None
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="bench-export-") as folder:
            started = time.perf_counter()
            info = export_backbone(args.source, os.path.join(folder, "backbone"))
            timings.append(time.perf_counter() - started)
            size_mb = sum(os.path.getsize(os.path.join(root, name))
                          for root, _, names in os.walk(folder) for name in names) / 2**20

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, TensorFlow {tensorflow.__version__}")
    print(f"source: {args.source} ({info.num_layers} layers, hidden size {info.hidden_size}, "
          f"vocabulary {info.vocab_size}); SavedModel {size_mb:.0f} MiB")
    print(f"import tensorflow + tensorflow_hub: {import_seconds:.1f} s")
    print(f"export_backbone: median {statistics.median(timings):.1f} s, "
          f"min {min(timings):.1f} s, max {max(timings):.1f} s over {len(timings)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
