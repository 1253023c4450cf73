"""The architecture rules fail the build when broken, not only when someone remembers them.

`make test` runs `lint-imports` with the project's contracts (.importlinter). These
tests show the same contracts catch a service importing another service and a
domain module importing infrastructure, on a throwaway tree.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(tree: Path, config: str) -> subprocess.CompletedProcess[str]:
    (tree / ".importlinter").write_text(textwrap.dedent(config))
    return subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )


def package(tree: Path, name: str, files: dict[str, str]) -> None:
    root = tree / name
    root.mkdir(parents=True, exist_ok=True)
    (root / "__init__.py").write_text("")
    for rel, body in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent != root and not (path.parent / "__init__.py").exists():
            (path.parent / "__init__.py").write_text("")
        path.write_text(body)


def project_contract(name: str) -> str:
    text = (ROOT / ".importlinter").read_text()
    sections = text.split("\n[")
    for section in sections:
        if section.startswith(f"importlinter:contract:{name}]"):
            return "[" + section
    raise AssertionError(f"contract {name} not found")


@pytest.mark.parametrize(
    ("contract", "files", "broken"),
    [
        ("services-independent", {"tsunagu_referral/app.py": "import tsunagu_intake.app\n"}, True),
        ("services-independent", {"tsunagu_referral/app.py": "import json\n"}, False),
        ("domain-pure", {"tsunagu_intake/domain/case.py": "import sqlalchemy\n"}, True),
        ("domain-pure", {"tsunagu_intake/domain/case.py": "import dataclasses\n"}, False),
    ],
)
def test_import_contracts_catch_violations(tmp_path: Path, contract: str, files: dict[str, str], broken: bool) -> None:
    for service in ("tsunagu_intake", "tsunagu_referral", "tsunagu_resources", "tsunagu_reporting"):
        package(tmp_path, service, {"domain/__init__.py": "", "app.py": ""})
    package(tmp_path, "sqlalchemy", {})
    package(tmp_path, "tsunagu_platform", {})
    for rel, body in files.items():
        (tmp_path / rel).write_text(body)
    header = """
        [importlinter]
        root_packages =
            tsunagu_intake
            tsunagu_referral
            tsunagu_resources
            tsunagu_reporting
            tsunagu_platform
            sqlalchemy
    """
    body = project_contract(contract)
    # Only modules that exist in the throwaway tree may be named.
    kept = ("tsunagu_platform", "sqlalchemy")
    body = "\n".join(
        line
        for line in body.splitlines()
        if not line.startswith("    ") or line.strip() in kept or line.strip().startswith("tsunagu_")
    )
    result = lint_imports(tmp_path, textwrap.dedent(header) + "\n" + body + "\n")
    assert (result.returncode != 0) is broken, result.stdout + result.stderr
    assert ("BROKEN" in result.stdout) is broken, result.stdout
