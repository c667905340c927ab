"""Optuna studies for ``tune-post``: naming, storage, resuming, and the trial loop.

Naming
    A study's name is ``tune-<metric>-<mode>-<hash>``; the hash covers the search space,
    the metric, the first trial's parameters, the images searched (so the holdout split)
    and the cache fingerprint. Running the same command again resumes the same study; a
    changed space, metric, split or cache starts a new one, never a study whose old trials
    would mean something else.

Storage
    By default a journal file beside the maps, ``<cache>/<study>.journal`` (Optuna's
    ``JournalStorage``). One process works on it at a time: an exclusive advisory lock on
    the file says so, which lets a resumed run treat trials left ``RUNNING`` as the remains
    of a killed run: they are marked ``FAIL`` and run again. ``--storage <RDB URL>``
    (``postgresql://...``, any SQLAlchemy URL Optuna accepts) lets several processes on
    several machines share one study; there a dead worker is noticed by its missing
    heartbeat, its trial is failed and queued again.

Counting
    ``n_trials`` counts COMPLETE trials, the first (the user's current parameters)
    included. A worker stops once the study holds ``n_trials`` complete trials, checked
    after each of its trials, so two workers end with ``n_trials`` or ``n_trials + 1``.

Sampling
    A seeded multivariate TPE sampler over the grid indices (thresh and the unclip ratio
    interact, so they are modelled jointly). The sampler's seed mixes ``--seed`` with the
    number of trials already in the study (and, with a shared storage, the worker's
    identity), so a resumed run does not replay the proposals of the first one.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from ..postprocess.params import PostProcessParams
from .space import SearchSpace

__all__ = [
    "StudyError", "StudyHandle", "Tuner", "study_name", "open_study", "run_trials",
    "complete_trials", "redo_failed_trial", "JOURNAL_SUFFIX", "MAX_REDO",
]

JOURNAL_SUFFIX = ".journal"
#: How many times a trial whose worker died is queued again before it is given up.
MAX_REDO = 2
#: Trial attributes carried over when a failed trial is queued again.
_CARRIED_ATTRS = ("baseline", "baseline_params", "off_grid")


class StudyError(ValueError):
    """A study that cannot be opened or run; one line."""


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------

def study_name(space: SearchSpace, metric: str, baseline: PostProcessParams,
               images: Sequence[str], fingerprint: Optional[str] = None) -> str:
    """The study name: ``tune-<metric>-<mode>-<12 hex digits>``.

    Parameters
    ----------
    space : SearchSpace
    metric : str
    baseline : PostProcessParams
        The first trial's parameters (their unsearched fields are every trial's).
    images : sequence of str
        The images the objective is computed on.
    fingerprint : str, optional
        The cache's fingerprint (maps from another model are another study).
    """
    payload = {
        "space": space.to_dict(),
        "metric": metric,
        "baseline": baseline.to_dict(),
        "images": hashlib.sha256("\n".join(images).encode("utf-8")).hexdigest(),
        "fingerprint": fingerprint,
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return f"tune-{metric}-{space.mode}-{digest}"


# --------------------------------------------------------------------------------------------
# Storage
# --------------------------------------------------------------------------------------------

def _journal_backend_class():
    try:
        from optuna.storages.journal import JournalFileBackend
    except ImportError:  # Optuna 3.x
        from optuna.storages import JournalFileStorage as JournalFileBackend
    return JournalFileBackend


def _journal_storage(path: Path):
    """Optuna's journal storage on ``path``, written by this process only (see below)."""
    try:
        from optuna.storages.journal import JournalStorage
    except ImportError:  # Optuna 3.x
        from optuna.storages import JournalStorage

    base = _journal_backend_class()

    class _SoleWriterJournal(base):
        """A journal file with one writer: the process holding the advisory lock.

        Optuna's file backend takes a lock link and calls ``fsync`` on every record (a
        trial writes about thirty records). With a single writer, the lock link is not
        needed, and a record handed to the kernel survives the writer being killed; only
        an operating-system crash can lose the records written since the last
        :meth:`sync` (run after a trial when the previous one is two seconds old, and at
        the end).
        """

        def __init__(self, file_path: str) -> None:
            super().__init__(file_path)
            self._sole_path = file_path
            self._fh = open(file_path, "ab")
            self._synced = time.monotonic()

        def append_logs(self, logs) -> None:
            data = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
            self._fh.write(data.encode("utf-8"))
            self._fh.flush()

        def sync(self, min_interval: float = 0.0) -> None:
            if self._fh.closed or time.monotonic() - self._synced < min_interval:
                return
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._synced = time.monotonic()

        def close(self) -> None:
            if not self._fh.closed:
                self.sync()
                self._fh.close()

    backend = _SoleWriterJournal(str(path))
    return JournalStorage(backend), backend


def _repair_journal(path: Path) -> bool:
    """Cut an unfinished last line (a write interrupted by a kill); returns True if cut.

    Only safe while no other process appends to the file (the caller holds the lock).
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if size == 0:
        return False
    with open(path, "rb+") as fh:
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return False
        # Find the last complete line.
        pos = size
        block = 1 << 16
        keep = 0
        while pos > 0:
            start = max(0, pos - block)
            fh.seek(start)
            chunk = fh.read(pos - start)
            i = chunk.rfind(b"\n")
            if i >= 0:
                keep = start + i + 1
                break
            pos = start
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
    return True


class _JournalLock:
    """An exclusive advisory lock on the journal file, held for the whole run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh = open(path, "ab")
        try:
            import fcntl
        except ImportError:  # pragma: no cover - no advisory locks on this platform
            return
        try:
            fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self.fh.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise StudyError(
                    f"{path}: another tune-post is running this study; wait for it, or share "
                    f"the study between processes with --storage postgresql://...") from None
            raise

    def release(self) -> None:
        if not self.fh.closed:
            self.fh.close()


@dataclass
class StudyHandle:
    """An opened study and what was done to open it.

    Attributes
    ----------
    study : optuna.Study
    name : str
    storage_desc : str
        Where the study lives (journal path or URL without password).
    single_worker : bool
        True for the journal storage (this process is the only worker).
    created : bool
        The study did not exist before.
    redone : list of int
        Numbers of trials found ``RUNNING`` from a killed run, failed and queued again.
    """

    study: Any
    name: str
    storage_desc: str
    single_worker: bool
    created: bool
    redone: List[int] = field(default_factory=list)
    _lock: Optional[_JournalLock] = None
    _journal: Any = None

    def sync(self, min_interval: float = 0.0) -> None:
        """Flush the journal to disk, unless it was flushed less than ``min_interval`` s ago."""
        if self._journal is not None:
            self._journal.sync(min_interval)

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        try:
            self.study._storage.remove_session()
        except Exception:
            pass

    def __enter__(self) -> "StudyHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(url)
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
            return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        pass
    return url


def redo_failed_trial(study, trial) -> None:
    """Queue a failed trial again with the same coordinates (at most :data:`MAX_REDO` times).

    Used for trials whose worker died (heartbeat lost, or found ``RUNNING`` on resume).
    """
    redo = int(trial.user_attrs.get("redo_count", 0))
    if redo >= MAX_REDO:
        return
    if not trial.params and not trial.user_attrs.get("baseline"):
        return  # died before sampling: nothing to repeat, the loop runs a new trial anyway
    attrs = {k: trial.user_attrs[k] for k in _CARRIED_ATTRS if k in trial.user_attrs}
    attrs["redo_count"] = redo + 1
    attrs["redo_of"] = trial.number
    study.enqueue_trial(dict(trial.params), user_attrs=attrs)


def _driver_url(url: str) -> str:
    """``postgresql://`` means psycopg2 to SQLAlchemy; use psycopg 3 when only it is installed."""
    import importlib.util

    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg2") is None \
            and importlib.util.find_spec("psycopg") is not None:
        return "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def _rdb_storage(url: str, heartbeat: int):
    import inspect

    import optuna

    url = _driver_url(url)

    kw: Dict[str, Any] = {"heartbeat_interval": int(heartbeat), "grace_period": int(heartbeat) * 3}
    sig = inspect.signature(optuna.storages.RDBStorage.__init__).parameters
    if "heartbeat_stale_trial_callback" in sig:
        kw["heartbeat_stale_trial_callback"] = redo_failed_trial
    else:  # Optuna < 4.4
        kw["failed_trial_callback"] = redo_failed_trial
    # Connections are checked before use: a long trial must not find a dead one.
    engine_kwargs = {"pool_pre_ping": True} if not url.startswith("sqlite") else None
    # Workers started together on a new database race to create Optuna's tables; the
    # losers see a unique-key or "already exists" error and simply try again.
    for attempt in range(6):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kw)
        except Exception as exc:
            kind = type(exc).__name__
            if attempt == 5 or kind not in ("IntegrityError", "ProgrammingError"):
                raise
            time.sleep(0.2 + 0.3 * attempt)
    raise AssertionError("unreachable")


def _sampler(seed: int, n_existing: int, worker: str):
    import optuna

    text = f"{int(seed)}:{int(n_existing)}:{worker}"
    s = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big") & 0x7FFFFFFF
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=s, multivariate=True, constant_liar=True)


def open_study(name: str, cache_dir: Optional[Path] = None, storage: Optional[str] = None,
               seed: int = 0, heartbeat: int = 10) -> StudyHandle:
    """Create or load the study ``name``.

    Parameters
    ----------
    name : str
        Study name (see :func:`study_name`).
    cache_dir : path, optional
        Where the journal file goes when ``storage`` is not given.
    storage : str, optional
        An RDB URL shared by several workers (``postgresql://user@host/db``...).
    seed : int
        Seed of the sampler (mixed with the study's progress, see the module docstring).
    heartbeat : int
        Heartbeat interval in seconds with an RDB storage (a trial silent for three
        intervals is failed and queued again).

    Raises
    ------
    StudyError
        Another process holds the journal, or the storage cannot be reached.
    """
    import optuna
    from optuna.trial import TrialState

    # Optuna logs each trial, and a failed trial's traceback, on its own; the command
    # reports progress and errors itself (one line).
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    lock = None
    if storage is None:
        if cache_dir is None:
            raise ValueError("open_study needs cache_dir or storage")
        path = Path(cache_dir) / f"{name}{JOURNAL_SUFFIX}"
        lock = _JournalLock(path)
        try:
            _repair_journal(path)
            # A lock link left by a killed writer would stall the first write: with the
            # advisory lock held, nobody else can be writing this file.
            link = Path(str(path) + ".lock")
            if link.is_symlink() or link.exists():
                link.unlink()
            store, backend = _journal_storage(path)
        except BaseException:
            lock.release()
            raise
        desc, single, worker = str(path), True, ""
    else:
        backend = None
        if "://" not in storage:
            raise StudyError(f"--storage must be a database URL such as "
                             f"postgresql://user@host:5432/db, got {storage!r}")
        if heartbeat < 1:
            raise StudyError("--heartbeat must be >= 1 second")
        try:
            store = _rdb_storage(storage, heartbeat)
        except ImportError as exc:
            raise StudyError(f"--storage {_safe_url(storage)}: a database driver is missing "
                             f"({exc.name}); install unclip-tuner[postgres]") from None
        except Exception as exc:  # SQLAlchemy raises many types for a bad URL or server
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StudyError(f"--storage {_safe_url(storage)}: cannot open the database "
                             f"({first})") from None
        desc, single = _safe_url(storage), False
        worker = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"

    try:
        created = True
        try:
            study = optuna.create_study(study_name=name, storage=store, direction="maximize",
                                        load_if_exists=False)
        except optuna.exceptions.DuplicatedStudyError:
            created = False
            study = optuna.load_study(study_name=name, storage=store)
        n_existing = len(study.get_trials(deepcopy=False))
        study.sampler = _sampler(seed, n_existing, worker)
        handle = StudyHandle(study, name, desc, single, created, _lock=lock, _journal=backend)
        if single:
            # Single worker: whatever is RUNNING was left by a killed run.
            study_id = store.get_study_id_from_name(name)
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                tid = store.get_trial_id_from_study_id_trial_number(study_id, t.number)
                store.set_trial_state_values(tid, TrialState.FAIL)
                redo_failed_trial(study, t)
                handle.redone.append(t.number)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return handle


# --------------------------------------------------------------------------------------------
# The objective
# --------------------------------------------------------------------------------------------

def complete_trials(study) -> list:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


class Tuner:
    """The objective of a study: decode and score one parameter set over the search images.

    Parameters
    ----------
    engine : object
        Anything with ``evaluate(params, images) -> DatasetScore`` (the fast engine).
    space : SearchSpace
    baseline : PostProcessParams
        The first trial's parameters (the user's current ones). Unsearched fields of every
        other trial come from them (with the mode and ``--fix`` values applied).
    images : list of str
        The images searched (the holdout excluded).
    """

    def __init__(self, engine, space: SearchSpace, baseline: PostProcessParams,
                 images: Sequence[str]) -> None:
        self.engine = engine
        self.space = space
        self.baseline = baseline
        self.images = list(images)
        self.base = space.base(baseline)

    def enqueue_baseline(self, study) -> bool:
        """Queue the first trial (the user's parameters) unless the study already has it.

        Returns True when queued. A trial of the baseline that is COMPLETE, WAITING or
        RUNNING counts as present; a failed one does not.
        """
        from optuna.trial import TrialState

        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.WAITING,
                                                          TrialState.RUNNING)):
            if t.user_attrs.get("baseline"):
                return False
        coords, off = self.space.indices_of(self.baseline)
        study.enqueue_trial(coords, user_attrs={"baseline": True,
                                                "baseline_params": self.baseline.to_dict(),
                                                "off_grid": off})
        return True

    def params_of(self, trial) -> PostProcessParams:
        """The parameters a trial evaluates (asks the trial for every dimension)."""
        values = self.space.suggest(trial)
        if trial.user_attrs.get("baseline"):
            return PostProcessParams.from_dict(trial.user_attrs["baseline_params"])
        return self.base.replace(**values)

    def __call__(self, trial) -> float:
        params = self.params_of(trial)
        t0 = time.perf_counter()
        score = self.engine.evaluate(params, images=self.images)
        trial.set_user_attr("params", params.to_dict())
        trial.set_user_attr("recall", float(score.recall))
        trial.set_user_attr("precision", float(score.precision))
        trial.set_user_attr("seconds", round(time.perf_counter() - t0, 4))
        return float(score.hmean)


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------

class _StopAtComplete:
    """Stop the study once it holds ``n`` COMPLETE trials (checked after each trial)."""

    def __init__(self, n: int, on_trial: Optional[Callable] = None) -> None:
        self.n = int(n)
        self.on_trial = on_trial

    def __call__(self, study, trial) -> None:
        done = complete_trials(study)
        if self.on_trial is not None:
            self.on_trial(study, trial, done)
        if len(done) >= self.n:
            study.stop()


def run_trials(handle: StudyHandle, tuner: Tuner, n_trials: int,
               on_trial: Optional[Callable] = None) -> int:
    """Run trials until the study holds ``n_trials`` COMPLETE trials; returns how many ran here.

    Parameters
    ----------
    handle : StudyHandle
    tuner : Tuner
    n_trials : int
        Target number of COMPLETE trials in the study (the first one included).
    on_trial : callable, optional
        ``on_trial(study, frozen_trial, complete_trials)`` after every trial of this worker
        (progress display).
    """
    if n_trials < 1:
        raise ValueError("--trials must be >= 1")
    study = handle.study
    if handle.created or handle.single_worker:
        tuner.enqueue_baseline(study)
    elif complete_trials(study) and not any(t.user_attrs.get("baseline")
                                            for t in study.get_trials(deepcopy=False)):
        # A shared study whose creator died before queueing the first trial.
        tuner.enqueue_baseline(study)
    if len(complete_trials(study)) >= n_trials:
        return 0
    ran = [0]

    def count(study_, trial, done):
        ran[0] += 1
        handle.sync(min_interval=2.0)
        if on_trial is not None:
            on_trial(study_, trial, done)

    study.optimize(tuner, n_trials=None, callbacks=[_StopAtComplete(n_trials, count)],
                   gc_after_trial=False)
    return ran[0]
