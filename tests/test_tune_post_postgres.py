"""Two tune-post workers sharing one study in a real PostgreSQL server.

The test starts its own server (``initdb`` + ``pg_ctl``) in a temporary folder on a
loopback port, as a non-root user when run as root (PostgreSQL refuses to run as root),
and stops it at the end. It is skipped, with the reason, when the PostgreSQL binaries or
the psycopg driver are missing.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from test_tune_post_cli import CURRENT, make_tiny_cache

REPO = Path(__file__).resolve().parents[1]
PG_USER = "pgtest"


def _pg_bin():
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.isfile(f"{d}/initdb") and os.path.isfile(f"{d}/pg_ctl"):
            return d
    found = shutil.which("initdb")
    return os.path.dirname(found) if found and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_pg_user(cmd):
    """Run ``cmd`` (a list) as the unprivileged server user when we are root."""
    if os.geteuid() != 0:
        return subprocess.run(cmd, capture_output=True, text=True)
    return subprocess.run(["su", PG_USER, "-s", "/bin/sh", "-c",
                           " ".join(f"'{c}'" for c in cmd)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def pg_url():
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    try:
        import psycopg  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the postgres extra is not installed ({exc.name})")
    if os.geteuid() == 0 and subprocess.run(["id", PG_USER], capture_output=True).returncode:
        r = subprocess.run(["useradd", "-m", PG_USER], capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"cannot create the user {PG_USER} to run PostgreSQL: {r.stderr.strip()}")
    root = tempfile.mkdtemp(prefix="unclip-pg-")
    os.chmod(root, 0o755)
    if os.geteuid() == 0:
        shutil.chown(root, PG_USER, PG_USER)
    data, log = f"{root}/data", f"{root}/server.log"
    port = _free_port()
    r = _as_pg_user([f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres"])
    if r.returncode:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"initdb failed: {r.stderr.strip()[-500:]}")
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=50"
    r = _as_pg_user([f"{bindir}/pg_ctl", "-D", data, "-l", log, "-o", opts, "-w", "start"])
    if r.returncode:
        text = Path(log).read_text() if os.path.exists(log) else r.stderr
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"pg_ctl start failed: {text.strip()[-500:]}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        _as_pg_user([f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"])
        shutil.rmtree(root, ignore_errors=True)


def _load(url: str, name: str):
    import optuna

    from unclip_tuner.search.study import _driver_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=_driver_url(url))


def test_two_workers_share_one_study(pg_url, tmp_path):
    cache = make_tiny_cache(tmp_path / "cache", n=4)
    n = 24
    procs = []
    for i in range(2):
        cmd = [sys.executable, "-m", "unclip_tuner", "tune-post", "--cache", str(cache),
               "--trials", str(n), "--storage", pg_url, "--jobs", "1", "--no-progress",
               "--no-plots", "--seed", "0", "--out", str(tmp_path / f"out{i}")]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, cwd=REPO))
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
    import json

    sums = [json.loads((tmp_path / f"out{i}" / "summary.json").read_text()) for i in range(2)]
    name = sums[0]["study"]
    assert sums[1]["study"] == name
    study = _load(pg_url, name)
    trials = study.get_trials()
    states = [t.state.name for t in trials]
    complete = states.count("COMPLETE")
    assert n <= complete <= n + 1
    assert "RUNNING" not in states and "WAITING" not in states and "FAIL" not in states
    # nothing lost or counted twice: numbers are 0..k-1, each trial id once, one first trial
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert len({t._trial_id for t in trials}) == len(trials)
    firsts = [t for t in trials if t.user_attrs.get("baseline")]
    assert len(firsts) == 1 and firsts[0].user_attrs["params"]["thresh"] == CURRENT["thresh"]
    assert sum(s["ran_here"] for s in sums) == complete

    # A worker dies in the middle of a trial; a live worker fails it by its heartbeat and
    # queues it again with the same coordinates.
    script = textwrap.dedent(f"""
        import os, signal
        from unclip_tuner.postprocess.params import PostProcessParams
        from unclip_tuner.search.space import build_space
        from unclip_tuner.search.study import Tuner, open_study, run_trials

        class DyingEngine:
            def evaluate(self, params, images=None):
                os.kill(os.getpid(), signal.SIGKILL)

        h = open_study({name!r}, storage={pg_url!r}, heartbeat=1)
        run_trials(h, Tuner(DyingEngine(), build_space(), PostProcessParams.from_dict({CURRENT!r}),
                            []), 10_000)
    """)
    dead = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True)
    assert dead.returncode == -signal.SIGKILL
    running = [t for t in _load(pg_url, name).get_trials() if t.state.name == "RUNNING"]
    assert len(running) == 1 and running[0].params
    time.sleep(4.5)  # past the grace period (3 heartbeats of 1 s)
    target = complete + 2
    res = subprocess.run([sys.executable, "-m", "unclip_tuner", "tune-post", "--cache", str(cache),
                          "--trials", str(target), "--storage", pg_url, "--heartbeat", "1",
                          "--jobs", "1", "--no-progress", "--no-plots",
                          "--out", str(tmp_path / "out3")],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stderr
    trials = _load(pg_url, name).get_trials()
    by_number = {t.number: t for t in trials}
    victim = by_number[running[0].number]
    assert victim.state.name == "FAIL"
    redo = [t for t in trials if t.user_attrs.get("redo_of") == victim.number]
    assert len(redo) == 1 and redo[0].params == victim.params and redo[0].state.name == "COMPLETE"
    assert [t.state.name for t in trials].count("COMPLETE") == target
