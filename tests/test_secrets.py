"""Secrets never reach log output: URL passwords and registered values are masked."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pipeline.config import CredentialsConfig
from pipeline.errors import ConfigError
from pipeline.secrets import (
    SecretMaskingFilter,
    mask_secrets,
    resolve_credentials,
    url_with_credentials,
)


def test_url_password_masked() -> None:
    text = "connecting to rtsp://admin:hunter2@10.0.0.5:554/live failed"
    assert mask_secrets(text) == "connecting to rtsp://admin:***@10.0.0.5:554/live failed"


def test_env_password_registered_and_masked_also_url_encoded() -> None:
    creds = CredentialsConfig(username_env="U", password_env="P")
    user, password = resolve_credentials(creds, env={"U": "op", "P": "p@ss/wörd!"})
    assert (user, password) == ("op", "p@ss/wörd!")
    url = url_with_credentials("rtsp://cam.local/stream", user, password)
    assert url.startswith("rtsp://op:p%40ss%2Fw%C3%B6rd%21@cam.local")
    masked = mask_secrets(f"raw p@ss/wörd! and url {url}")
    assert "p@ss" not in masked and "p%40ss" not in masked
    assert "***" in masked


def test_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-a-file-123\n")
    _, password = resolve_credentials(CredentialsConfig(password_file=secret), env={})
    assert password == "from-a-file-123"
    assert mask_secrets("x from-a-file-123 y") == "x *** y"


def test_missing_env_named() -> None:
    with pytest.raises(ConfigError, match="CAM9_PASSWORD is not set"):
        resolve_credentials(CredentialsConfig(password_env="CAM9_PASSWORD"), env={})


def test_filter_masks_formatted_args_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    resolve_credentials(CredentialsConfig(password_env="P"), env={"P": "tr0ub4dor-x"})
    logger = logging.getLogger("test.secrets")
    caplog.handler.addFilter(SecretMaskingFilter())
    with caplog.at_level(logging.INFO):
        logger.info("open %s", "rtsp://u:tr0ub4dor-x@h/s")
        try:
            raise RuntimeError("auth failed for tr0ub4dor-x")
        except RuntimeError:
            logger.exception("camera failed")
    assert "tr0ub4dor-x" not in caplog.text
    assert "***" in caplog.text
