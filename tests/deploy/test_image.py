"""The deployment kit's image: the Dockerfile, its build context (.dockerignore), and compose
building it. Docker is not needed: the files are read, and held against the source tree.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text("utf-8")
SERVICES: dict[str, dict[str, Any]] = yaml.safe_load(
    (ROOT / "docker-compose.yml").read_text("utf-8")
)["services"]


def stages() -> list[list[str]]:
    """The Dockerfile's stages, each a list of instructions (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    found: list[list[str]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            found.append([])
        found[-1].append(line.strip())
    return found


def test_final_stage_is_slim_non_root_and_installs_the_built_wheel() -> None:
    builder, final = stages()[0], stages()[-1]
    assert len(stages()) >= 2
    builder_name = builder[0].split()[-1]
    assert any("pip wheel" in line for line in builder)
    assert final[0].split()[1].startswith("python:3.11.")
    assert "-slim" in final[0].split()[1]
    install = next(i for i, line in enumerate(final) if "pip install" in line)
    assert f"from={builder_name}" in final[install] or f"--from={builder_name}" in final[install]
    users = [line.split()[1] for line in final[install:] if line.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert any(line.upper().startswith(("CMD", "ENTRYPOINT")) for line in final)


def test_compose_builds_this_dockerfile() -> None:
    built = {name: service for name, service in SERVICES.items() if "build" in service}
    assert built
    for name, service in built.items():
        build = service["build"]
        context, dockerfile = (build, "Dockerfile") if isinstance(build, str) else (
            build.get("context", "."), build.get("dockerfile", "Dockerfile")
        )  # fmt: skip
        assert (ROOT / context / dockerfile).resolve() == ROOT / "Dockerfile", name


def excluded(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps ``path`` out of the build context (the last match decides)."""
    parts = path.split("/")
    verdict = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.removeprefix("!").strip("/")
        regex = re.escape(glob).replace(r"\*\*", ".*").replace(r"\*", "[^/]*").replace(r"\?", ".")
        if any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            verdict = not negated
    return verdict


def test_build_context_holds_what_the_build_needs_and_no_secrets() -> None:
    lines = (ROOT / ".dockerignore").read_text("utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    copied = [
        source
        for line in stages()[0]
        if line.upper().startswith("COPY ") and "--from" not in line
        for source in line.split()[1:-1]
    ]
    package = [
        str(path.relative_to(ROOT))
        for folder in ("worker",)
        for path in (ROOT / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    ]
    for path in copied + package:
        assert (ROOT / path).exists() and not excluded(path, patterns), path
    kept_out = [".env", "secrets/sms_appkey", ".git/config", "sms-ledger.db", ".venv/bin/python"]
    for path in [*kept_out, "worker/__pycache__/config.cpython-311.pyc"]:
        assert excluded(path, patterns), path


def test_no_secret_is_set_in_the_image() -> None:
    settings = [
        line for stage in stages() for line in stage if line.upper().startswith(("ENV", "ARG"))
    ]
    assert settings, "the final stage sets its Python environment"
    for line in settings:
        assert not re.search(r"APPKEY|TOKEN|PASSWORD|SECRET", line, re.IGNORECASE), line


def test_every_base_image_is_pinned_to_an_exact_release() -> None:
    bases = [stage[0].split()[1] for stage in stages()]
    for base in bases:
        exact = re.fullmatch(r"python:\d+\.\d+\.\d+-[\w.-]+(@sha256:[0-9a-f]{64})?", base)
        assert exact or re.search(r"@sha256:[0-9a-f]{64}$", base), f"{base} floats"
    assert len(set(bases)) == 1, "builder and runtime build on the same Python"
