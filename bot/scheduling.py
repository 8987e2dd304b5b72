"""Digest scheduling: APScheduler 3 with its SQLAlchemy job store on the state database.

- Jobs have stable ids (``digest:<channel>``) and are only replaced when their schedule changes,
  so a restart keeps each job's stored next run time: a bot down at 09:00 and back within the
  grace period posts the missed digest once (``coalesce``); later than that, the run is skipped,
  logged and shown in ``/segment digest list``.
- One scheduler per database: every bot process answers commands, but only the holder of the
  ``digest-scheduler`` lease runs jobs; it renews the lease on a heartbeat, and another process
  takes over when it stops renewing.
- The subscriptions table is the truth; the leader reconciles its jobs with it on every beat.
- Stored jobs are pickles, so each carries an HMAC keyed by the bot token: a row written by
  anyone without the token is refused and dropped, never unpickled, and the leader re-creates
  the job from its subscription.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import os
import pickle
import threading
from typing import Any

import sqlalchemy as sa
from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.base import run_job
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import ConflictingIdError, JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.util import datetime_to_utc_timestamp
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from segmentation.serving.schedule_spec import make_trigger

from . import liveness
from .digests import Digests

log = logging.getLogger(__name__)
LEASE = "digest-scheduler"
JOB_PREFIX = "digest:"
MISFIRE_GRACE = dt.timedelta(hours=1)

_current = threading.local()


def digest_job(channel_id: str) -> None:
    """The stored job's function: post the digest of ``channel_id`` for the run time being executed."""
    owner: DigestScheduler = _current.owner
    owner.digests.run(channel_id, scheduled_for=_current.run_time)


class SignedJobStore(SQLAlchemyJobStore):
    """APScheduler's SQLAlchemy job store with authenticated job states.

    ``add_job`` and ``update_job`` are APScheduler 3.11's own, with the state signed;
    ``_reconstitute_job`` checks the signature before anything is unpickled.
    """

    def __init__(self, key: bytes, **kwargs: Any):
        super().__init__(**kwargs)
        self._key = key

    def _seal(self, job) -> bytes:
        data = pickle.dumps(job.__getstate__(), self.pickle_protocol)
        return hmac.new(self._key, data, hashlib.sha256).digest() + data

    def add_job(self, job):
        insert = self.jobs_t.insert().values(
            id=job.id, next_run_time=datetime_to_utc_timestamp(job.next_run_time), job_state=self._seal(job)
        )
        with self.engine.begin() as connection:
            try:
                connection.execute(insert)
            except IntegrityError:
                raise ConflictingIdError(job.id) from None

    def update_job(self, job):
        update = (
            self.jobs_t.update()
            .values(next_run_time=datetime_to_utc_timestamp(job.next_run_time), job_state=self._seal(job))
            .where(self.jobs_t.c.id == job.id)
        )
        with self.engine.begin() as connection:
            if connection.execute(update).rowcount == 0:
                raise JobLookupError(job.id)

    def _reconstitute_job(self, job_state):
        mac, data = bytes(job_state[:32]), bytes(job_state[32:])
        if not hmac.compare_digest(mac, hmac.new(self._key, data, hashlib.sha256).digest()):
            raise ValueError("job state not signed with this bot's key; refusing to unpickle it")
        return super()._reconstitute_job(data)

    def shutdown(self):
        pass  # the engine is the state database's, shared with the rest of the bot


def job_store_key(bot_token: str) -> bytes:
    return hmac.new(bot_token.encode(), b"segment-assistant digest job store v1", hashlib.sha256).digest()


def job_store(state, bot_token: str) -> SignedJobStore:
    return SignedJobStore(job_store_key(bot_token), engine=state.engine, tablename="apscheduler_jobs")


class _DigestExecutor(ThreadPoolExecutor):
    """Runs jobs with their owner and scheduled run time at hand (APScheduler 3 does not pass it)."""

    def __init__(self, owner: DigestScheduler, max_workers: int = 2):
        super().__init__(max_workers)
        self.owner = owner

    def _do_submit_job(self, job, run_times):
        def call():
            _current.owner, _current.run_time = self.owner, run_times[-1]
            try:
                return run_job(job, job._jobstore_alias, run_times, self._logger.name)
            finally:
                _current.owner = _current.run_time = None

        def callback(f):
            exc = f.exception()
            if exc:
                self._run_job_error(job.id, exc, getattr(exc, "__traceback__", None))
            else:
                self._run_job_success(job.id, f.result())

        self._pool.submit(call).add_done_callback(callback)


class DigestScheduler:
    def __init__(
        self,
        digests: Digests,
        *,
        lease_ttl: float = 30.0,
        heartbeat: float = 10.0,
        misfire_grace: dt.timedelta = MISFIRE_GRACE,
    ):
        self.digests = digests
        self.state = digests.state
        self.holder = liveness.new_holder()  # host:pid:token, registered while this process runs
        self.lease_ttl = dt.timedelta(seconds=lease_ttl)
        self.heartbeat = heartbeat
        self.misfire_grace = misfire_grace
        self.scheduler: BackgroundScheduler | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._recovery: threading.Thread | None = None

    @property
    def leading(self) -> bool:
        return self.scheduler is not None

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> DigestScheduler:
        self.beat()
        self._thread = threading.Thread(target=self._loop, name="digest-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self, release: bool = True) -> None:
        """Stop; ``release=False`` leaves the lease to expire, as a crashed process would."""
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(10)
        with self._lock:
            self._stop_scheduler()
        if self._recovery is not None:
            self._recovery.join(60)
        if release:
            self.state.release(LEASE, self.holder)
            liveness.release(self.holder)

    def changed(self) -> None:
        """Subscriptions changed: reconcile now if this process leads (others catch up on their beat)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.heartbeat)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 - a database hiccup must not kill the heartbeat
                log.warning(
                    "digest scheduler heartbeat failed (%s: %s); trying again",
                    type(exc).__name__,
                    str(exc).splitlines()[0] if str(exc) else "",
                )

    def beat(self) -> None:
        with self._lock:
            ok, lease = self.state.try_acquire(LEASE, self.holder, self.lease_ttl, {"pid": os.getpid()})
            why = None if ok or lease is None else liveness.gone(lease.holder)
            if why is not None:  # a leader on this host that is certainly gone: no need to wait out its lease
                assert lease is not None
                log.warning("the digest scheduler's leader stopped (%s); taking over", why)
                self.state.release(LEASE, lease.holder)
                ok, _ = self.state.try_acquire(LEASE, self.holder, self.lease_ttl, {"pid": os.getpid()})
            if ok and not self.leading:
                self._start_scheduler()
            elif not ok and self.leading:
                log.warning("lost the digest scheduler lease; another process schedules now")
                self._stop_scheduler()
            if self.leading:
                self.sync()
                self._recover()

    def _recover(self) -> None:
        """Finish runs a dead process left behind, off the heartbeat thread (a digest can take
        longer than the lease)."""
        if self._recovery is not None and self._recovery.is_alive():
            return
        self._recovery = threading.Thread(target=self._recover_now, name="digest-recovery", daemon=True)
        self._recovery.start()

    def _recover_now(self) -> None:
        try:
            self.digests.recover()
        except Exception:  # noqa: BLE001 - tried again on the next beat
            log.exception("digest recovery failed")

    def _start_scheduler(self) -> None:
        scheduler = BackgroundScheduler(
            jobstores={"default": job_store(self.state, self.digests.ctx.settings.bot_token)},
            executors={"default": _DigestExecutor(self)},
            job_defaults={
                "coalesce": True,
                "misfire_grace_time": int(self.misfire_grace.total_seconds()),
                "max_instances": 1,
            },
            timezone=dt.UTC,
        )
        scheduler.add_listener(self._on_missed, EVENT_JOB_MISSED)
        scheduler.start(paused=True)  # reconcile against the stored jobs before anything runs
        self.scheduler = scheduler
        self.sync()
        scheduler.resume()
        log.info("this process schedules the digests (%s)", self.holder)

    def _stop_scheduler(self) -> None:
        if self.scheduler is not None:
            try:
                self.scheduler.shutdown(wait=True)
            except Exception:  # noqa: BLE001
                log.exception("scheduler shutdown failed")
            self.scheduler = None

    # -- jobs ---------------------------------------------------------------------------
    def sync(self) -> None:
        scheduler = self.scheduler
        if scheduler is None:
            return
        wanted = {JOB_PREFIX + s.channel_id: s for s in self.digests.subscriptions()}
        existing = {j.id: j for j in scheduler.get_jobs()}
        for job_id in existing.keys() - wanted.keys():
            scheduler.remove_job(job_id)
        for job_id, sub in wanted.items():
            spec = f"{sub.cron}|{sub.timezone}"
            job = existing.get(job_id)
            if job is not None and job.name == spec:
                continue  # unchanged: keep its stored next run time (missed runs are caught up)
            scheduler.add_job(
                digest_job,
                make_trigger(sub.cron, sub.timezone),
                args=[sub.channel_id],
                id=job_id,
                name=spec,
                replace_existing=True,
            )

    def next_runs(self) -> dict[str, dt.datetime | None]:
        """Next run per channel, from the stored jobs (what will really happen), without unpickling them."""
        try:
            with self.state.engine.connect() as con:
                rows = con.execute(sa.text("SELECT id, next_run_time FROM apscheduler_jobs")).all()
        except SQLAlchemyError:  # no leader has created the table yet
            return {}
        return {
            job_id.removeprefix(JOB_PREFIX): (None if t is None else dt.datetime.fromtimestamp(float(t), dt.UTC))
            for job_id, t in rows
        }

    def _on_missed(self, event: JobExecutionEvent) -> None:
        channel = event.job_id.removeprefix(JOB_PREFIX)
        late = dt.datetime.now(dt.UTC) - event.scheduled_run_time
        self.digests.record_missed(channel, event.scheduled_run_time, late)
