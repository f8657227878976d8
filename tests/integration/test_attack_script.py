"""Smoke test of scripts/attack.py: a quick subset against 3 real agents with a gossip key.

Attacks 4, 5, 7 and 9 are this branch's to pass; attack 1 (incarnation overflow) is
replayed to check that the attack itself runs and reports, whatever its verdict (its fix
is another change). The whole script is bounded; here it takes about 15 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "attack.py"
TIMEOUT = 150.0
"""Seconds for the whole run: three agents start (a few seconds each), then the attacks."""


def test_a_quick_subset_replays_its_attacks_and_reports_a_table_and_json(tmp_path: Path) -> None:
    out = tmp_path / "attack.json"
    argv = [sys.executable, str(SCRIPT), "--quick", "--encrypt", "--only", "1,4,5,7,9"]
    argv += ["--json", str(out), "--workdir", str(tmp_path / "work")]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)

    report = json.loads(out.read_text())
    rows = {row["number"]: row for row in report["attacks"]}
    assert sorted(rows) == [1, 4, 5, 7, 9], result.stdout + result.stderr
    for number in (4, 5, 7, 9):
        assert rows[number]["passed"], (rows[number], result.stdout)
    assert rows[1]["datagram_bytes"] == 21 + 29  # the dead message, sealed (29 bytes more)
    assert report["encrypt"] is True
    assert report["rss_ok"]
    assert report["idle_rss_mib"] > 0
    assert "stopped every agent" in result.stdout
    assert "DNS amplification" in result.stdout
    assert result.returncode == (0 if report["passed"] else 1)
