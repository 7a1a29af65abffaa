"""README "Docker compose" shows exactly what `make test-containers` runs, and `.ci/run` runs it."""

from __future__ import annotations

import re

from tests.containers.container_flow import EXPORTS, STEPS, readme_lines
from tests.helpers import ROOT

README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(title)
    following = re.search(r"^##+ ", README[start + len(title):], re.M)
    return README[start:start + len(title) + following.start()] if following else README[start:]


def first_shell_block(text: str) -> list[str]:
    block = re.search(r"```sh\n(.*?)```", text, re.S).group(1)
    return [line.split("  #")[0].rstrip() for line in block.splitlines() if line.strip()]


def test_the_readme_docker_block_is_the_flow_line_by_line():
    lines = first_shell_block(section("### On one machine, on loopback: what `make test-containers` runs"))
    assert lines == readme_lines()
    assert lines[-len(STEPS):] == list(STEPS.values())


def test_the_flow_sets_every_variable_the_readme_exports():
    exported = " ".join(line for line in readme_lines() if line.startswith("export "))
    assert all(f"{name}=" in exported for name in EXPORTS)
    # The ports the README shows are the controller config's defaults.
    config = (ROOT / "deploy" / "bluegreen.docker-local.toml").read_text()
    for name, key in (("BLUEGREEN_PORT", "port = "), ("BLUEGREEN_PREVIEW_PORT", "preview_port = ")):
        assert f"{key}{EXPORTS[name]}" in config
    assert f"ports = [{EXPORTS['BLUEGREEN_BLUE_PORT']}]" in config
    assert f"ports = [{EXPORTS['BLUEGREEN_GREEN_PORT']}]" in config


def test_ci_runs_the_container_flow_after_the_test_suite():
    lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[-2:] == ["make test", "make test-containers"]
    makefile = (ROOT / "Makefile").read_text()
    assert "test-containers: setup\n\t$(BIN)/python tests/containers/container_flow.py\n" in makefile
