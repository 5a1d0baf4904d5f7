"""PostgreSQL only: what SQLite cannot show (the schema itself is compared on both backends in test_store.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from core.config import REPO_ROOT

OPEN_AND_REPORT = "import sys; from core.store.db import current_revision, get_engine; print(current_revision(get_engine(sys.argv[1])))"


def test_processes_opening_a_new_database_at_once_all_get_the_schema(postgres_url, tmp_path):
    """App server, CLI and workers may all open an empty database at the same moment: the migrations run once."""
    from core.store.db import head_revision

    env = {**os.environ, "ADLENS_HOME": str(tmp_path), "PYTHONPATH": str(REPO_ROOT)}
    env.pop("ADLENS_DATABASE_URL", None)
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_AND_REPORT, postgres_url], cwd=REPO_ROOT, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    results = [(p.returncode, out.strip(), err.strip()[-2000:]) for p in procs for out, err in [p.communicate(timeout=120)]]
    assert [(code, out) for code, out, _ in results] == [(0, head_revision())] * 3, results
