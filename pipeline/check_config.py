"""Validate a config file: ``python -m pipeline.check_config CONFIG``.

Exits 0 and prints a one-line summary when the file is valid; exits 2 with a message that
names the bad field and its YAML line otherwise.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.config import AppConfig, load_config
from pipeline.errors import ConfigError


def check_references(config: AppConfig) -> list[str]:
    """Problems a schema cannot see: files named by the config that do not exist."""
    problems = []
    if config.detector.model_path is not None and not config.detector.model_path.is_file():
        problems.append(f"detector.model_path: file not found: {config.detector.model_path}")
    if not config.classify.model.is_file():
        problems.append(f"classify.model: file not found: {config.classify.model}")
    if config.enhance.sr_model is not None and not config.enhance.sr_model.is_file():
        problems.append(f"enhance.sr_model: file not found: {config.enhance.sr_model}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.check_config", description=__doc__)
    parser.add_argument("config", help="YAML config file")
    parser.add_argument("--no-files", action="store_true",
                        help="check the schema only, not that model files exist")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(f"invalid config: {err}", file=sys.stderr)
        return 2
    problems = [] if args.no_files else check_references(config)
    if problems:
        for problem in problems:
            print(f"invalid config: {args.config}: {problem}", file=sys.stderr)
        return 2
    cameras = ", ".join(c.id for c in config.cameras) or "none"
    print(f"{args.config}: valid (station {config.station.id}; cameras: {cameras}; "
          f"detector {config.detector.backend}; enhance {config.enhance.method})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
