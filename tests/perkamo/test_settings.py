"""Settings come from defaults, then the environment when asked, then flags; bad values and
timeouts in the wrong order fail with a message that names the setting."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

import psycopg
import pytest

from perkamo.settings import Settings, SettingsError
from storage import connect


def test_the_environment_is_read_only_when_asked(monkeypatch):
    monkeypatch.setenv("PERKAMO_PORT", "9999")
    monkeypatch.setenv("PERKAMO_IDLE_SECONDS", "12.5")
    assert Settings().port == 4001  # a developer's shell never leaks into a test
    settings = Settings.from_env({"PERKAMO_PORT": "9999", "PERKAMO_IDLE_SECONDS": "12.5"}, port=7)
    assert (settings.port, settings.idle_seconds) == (7, 12.5)  # the flag wins


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"PERKAMO_PORT": "eighty"}, "PERKAMO_PORT"),
        ({"PERKAMO_MAX_PENDING": "0"}, "PERKAMO_MAX_PENDING"),
        ({"PERKAMO_STATEMENT_TIMEOUT_SECONDS": "5"}, "PERKAMO_REQUEST_TIMEOUT_SECONDS"),
        ({"PERKAMO_CHECKOUT_TIMEOUT_SECONDS": "4.5"}, "PERKAMO_STATEMENT_TIMEOUT_SECONDS"),
        ({"PERKAMO_READ_TIMEOUT_SECONDS": "-1"}, "PERKAMO_READ_TIMEOUT_SECONDS"),
    ],
)
def test_a_bad_setting_names_itself(environ, named):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(environ)
    assert named in str(caught.value)


def test_the_cli_reports_a_bad_setting_without_a_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "perkamo", "spaces", "list"],
        env={"PERKAMO_DATA_DIR": str(tmp_path), "PERKAMO_REQUEST_TIMEOUT_SECONDS": "2"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "PERKAMO_REQUEST_TIMEOUT_SECONDS (2 s) must be longer" in result.stderr
    assert "Traceback" not in result.stderr


def test_storage_changes_json_handling_of_its_own_connections_only(pg_url):
    """Exact decimals on the product's connections; any other psycopg connection in the
    process keeps psycopg's defaults (importing storage used to replace them globally)."""
    with connect(pg_url) as ours:
        assert ours.execute("SELECT '{\"a\": 1.5}'::json").fetchone()[0] == {"a": Decimal("1.5")}
    with psycopg.connect(pg_url) as theirs:
        value = theirs.execute("SELECT '{\"a\": 1.5}'::json").fetchone()[0]["a"]
        assert type(value) is float
