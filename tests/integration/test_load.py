"""The switch-under-load scenario, short: locust on the front door, switches, a deploy, a rollback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.integration


def test_switch_under_load_scenario_drops_nothing(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "utils" / "switch_under_load.py"), "--duration", "25", "--switches", "4",
         "--users", "6", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| failures | 0 |" in result.stdout
    assert "v1.0.0: " in result.stdout and "v1.1.0: " in result.stdout
    assert (tmp_path / "switch_under_load.html").is_file()
