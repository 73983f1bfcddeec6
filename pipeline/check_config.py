"""Validate a config file: ``python -m pipeline.check_config CONFIG`` (or ``cctv-check-config``).

Exits 0 and prints a one-line summary when the file is valid; exits 2 with a message that
names the bad field and its YAML line (or the ``CCTV__...`` environment variable that set
it) otherwise. ``--schema`` prints the config's JSON Schema (draft 2020-12) instead, for
editors and for checking deployment configs without this package (``check-jsonschema``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.config import AppConfig, load_config
from pipeline.errors import ConfigError, shown_path
from pipeline.url_check import check_camera_url


def check_references(config: AppConfig) -> list[str]:
    """Problems a schema cannot see: files named by the config that do not exist."""
    problems = []
    if config.detector.model_path is not None and not config.detector.model_path.is_file():
        problems.append(f"detector.model_path: file not found: "
                        f"{shown_path(config.detector.model_path)}")
    if not config.classify.model.is_file():
        problems.append(f"classify.model: file not found: {shown_path(config.classify.model)}")
    if config.enhance.sr_model is not None and not config.enhance.sr_model.is_file():
        problems.append(f"enhance.sr_model: file not found: "
                        f"{shown_path(config.enhance.sr_model)}")
    for i, camera in enumerate(config.cameras):
        model = camera.enhance.sr_model if camera.enhance is not None else None
        if model is not None and not model.is_file():
            problems.append(f"cameras[{i}] ({camera.id}).enhance.sr_model: file not found: "
                            f"{shown_path(model)}")
    return problems


def camera_file_warnings(config: AppConfig) -> list[str]:
    """File cameras whose file is not there now. A warning, not an error: the file may be
    mounted or recorded later (the demo builds its clip on demand); but an address typed
    without a scheme (``10.0.0.5/stream1``) is read as a file path and shows up here."""
    warnings = []
    for i, camera in enumerate(config.cameras):
        kind, _ = check_camera_url(camera.url)
        path = urlsplit(camera.url).path if "://" in camera.url else camera.url
        if kind == "file" and camera.enabled and not Path(path).is_file():
            warnings.append(f"cameras.{i}.url ({camera.id}): file not found: "
                            f"{shown_path(path)} "
                            f"(a network camera needs a scheme, e.g. rtsp://host/path)")
    return warnings


def json_schema() -> dict:
    """JSON Schema of :class:`AppConfig` as written in YAML (validation mode: defaults
    optional, unknown keys refused)."""
    schema = AppConfig.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "CCTV face-emotion pipeline config"
    return schema


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.check_config", description=__doc__)
    parser.add_argument("config", nargs="?", help="YAML config file")
    parser.add_argument("--no-files", action="store_true",
                        help="check the schema only, not that model files exist")
    parser.add_argument("--schema", action="store_true",
                        help="print the config's JSON Schema and exit")
    args = parser.parse_args(argv)
    if args.schema:
        print(json.dumps(json_schema(), indent=2, sort_keys=True))
        return 0
    if args.config is None:
        parser.error("the config file is required (or --schema)")
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
    for warning in [] if args.no_files else camera_file_warnings(config):
        print(f"warning: {args.config}: {warning}", file=sys.stderr)
    cameras = ", ".join(c.id for c in config.cameras) or "none"
    print(f"{args.config}: valid (station {config.station.id}; cameras: {cameras}; "
          f"detector {config.detector.backend}; enhance {config.enhance.method})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
