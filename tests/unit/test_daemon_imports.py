"""`guardmail run` imports only what its configuration uses (issue 27: an ISP's milter daemon
should hold no XMPP, IMAP, DKIM, PDF or OAuth code in memory before it needs it).

Each case runs the real command line in a fresh interpreter, with the daemon built from the
config but not served (``Daemon.run`` returns at once), and lists the modules it imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Libraries of several MB each, and which configuration needs them (none of them a milter's).
HEAVY = {
    "slixmpp": "an XMPP source or warning",
    "imapclient": "an IMAP source",
    "aiosmtpd": "the after-queue filter",
    "dkim": "the first DKIM check at receipt",
    "dns": "the first DKIM key lookup",
    "jinja2": "the first warning rendered",
    "reportlab": "an export",
    "requests": "OAuth or a warning by e-mail",
    "authlib": "OAuth",
    "prometheus_client": "a metrics port (metrics:)",
    "rfc3161_client": "trusted timestamps (evidence.timestamp)",
    "cryptography": "the first tree head signed (a tenant's first archive)",
}

PROBE = """
import asyncio, json, sys
import guardmail.daemon.supervisor as supervisor

async def built(self):  # the daemon is built from the config; it serves nothing
    self.tenant.close()

supervisor.Daemon.run = built
from guardmail.cli import main
code = main(["-c", sys.argv[1], "run"])
print(json.dumps({"code": code, "modules": sorted(m.split(".")[0] for m in sys.modules)}))
"""


def imported_by_run(tmp_path: Path, source: str, extra: str = "") -> set[str]:
    tenants = tmp_path / "tenants.d"
    tenants.mkdir()
    (tenants / "t1.yaml").write_text(
        "name: t1\nrecipients: [c1@customer.test]\n"
        "offenders:\n  - {name: Ex, addresses: [ex@bad.example]}\n"
    )
    config = tmp_path / "guardmail.yaml"
    config.write_text(
        f"state_dir: {tmp_path}/var\nlog_level: warning\nsources:\n  smtp_filter:\n"
        f"{source}    tenants_dir: {tenants}\n{extra}"
    )
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["code"] == 0, done.stderr
    return set(result["modules"])


def test_a_milter_daemon_imports_no_library_it_does_not_use(tmp_path: Path) -> None:
    modules = imported_by_run(
        tmp_path, f"    mode: milter\n    listen: unix:{tmp_path}/milter.sock\n"
    )
    assert {m: why for m, why in HEAVY.items() if m in modules} == {}
    assert "guardmail" in modules  # the probe saw the daemon's own imports


@pytest.mark.parametrize(("mode", "library"), [("after_queue", "aiosmtpd")])
def test_a_configured_channel_imports_its_library(tmp_path: Path, mode: str, library: str) -> None:
    modules = imported_by_run(
        tmp_path,
        f"    mode: {mode}\n    listen: 127.0.0.1:10025\n    next_hop: 127.0.0.1:10026\n",
    )
    assert library in modules
    assert "slixmpp" not in modules and "dkim" not in modules


def test_a_metrics_port_imports_prometheus_client(tmp_path: Path) -> None:
    milter = f"    mode: milter\n    listen: unix:{tmp_path}/milter.sock\n"
    modules = imported_by_run(tmp_path, milter, "metrics: {listen: 127.0.0.1:9464}\n")
    assert "prometheus_client" in modules and "rfc3161_client" not in modules
