"""Every setting of the ``segment`` command and the bot it starts, read from the environment (and a
``.env`` file for the bot) in this one place; ``.env.example`` documents each. Nothing else reads
the environment: the domain gets its part as a ``segmentation.runtime.Runtime``."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from segmentation.data.urls import mask_text
from segmentation.errors import InputError, SegmentationError
from segmentation.runtime import DEFAULT_SESSIONS, Runtime
from segmentation.serving.signing import KEY_ENV, KEY_FILE_ENV, PREVIOUS_KEY_ENV, ModelKey, load_key
from segmentation.serving.store import KEEP_BYTES


class SettingsError(SegmentationError):
    """A missing or malformed setting; the message names the variable."""


_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")


@dataclass(frozen=True)
class Settings:
    bot_token: str = ""
    signing_secret: str = ""
    app_token: str = ""
    port: int = 3000
    bind_address: str = "127.0.0.1"
    api_url: str | None = None
    data: str | None = None
    admin_user_ids: frozenset[str] = field(default_factory=frozenset)
    database_url: str = "sqlite:///artifacts/segment.db"
    artifacts: Path = Path("artifacts")
    timezone: str = "UTC"
    digest_admin_only: bool = False
    digest_channel: str | None = None
    digest_cron: str | None = None
    digest_as_of: str = "auto"  # SEGMENT_DIGEST_AS_OF: auto (stale data: as of its last day) or today
    model_key: ModelKey | None = None  # None: the key file in ``artifacts``
    threads: int | None = None  # SEGMENT_THREADS: KMeans's (default 1) and DuckDB's (default: every core)
    duckdb_memory: str = "1GB"  # SEGMENT_DUCKDB_MEMORY
    db_sessions: int = DEFAULT_SESSIONS  # SEGMENT_DB_SESSIONS, 1 to 16
    spark_master: str = "local[*]"  # SEGMENT_SPARK_MASTER
    spark_partitions: int = 8  # SEGMENT_SPARK_PARTITIONS
    playbook: Path | None = None  # SEGMENT_PLAYBOOK
    keep_bytes: int = KEEP_BYTES  # SEGMENT_MODELS_MAX_MB
    debug: bool = False  # SEGMENT_DEBUG: tracebacks of unexpected errors
    user: str = ""  # USER: who trained a model from the command line
    key_env: tuple[tuple[str, str], ...] = ()  # SEGMENT_MODEL_KEY, _PREVIOUS_KEY, _KEY_FILE as given

    def key_for(self, artifacts: str | os.PathLike) -> ModelKey:
        """The model key of the store at ``artifacts`` (the key file is made on first use)."""
        return load_key(artifacts, dict(self.key_env))

    @property
    def runtime(self) -> Runtime:
        """The domain's part."""
        return Runtime(
            threads=self.threads,
            duckdb_memory=self.duckdb_memory,
            db_sessions=self.db_sessions,
            spark_master=self.spark_master,
            spark_partitions=self.spark_partitions,
            playbook=self.playbook,
        )

    @property
    def socket_mode(self) -> bool:
        return bool(self.app_token)

    def is_admin(self, user_id: str) -> bool:
        return user_id in self.admin_user_ids

    def __repr__(self) -> str:  # never print tokens
        return (
            f"Settings(bind={self.bind_address}:{self.port}, api_url={self.api_url!r}, data={mask_text(self.data or '')!r}, "
            f"admins={sorted(self.admin_user_ids)}, database_url={_redact(self.database_url)!r}, "
            f"socket_mode={self.socket_mode})"
        )


def _redact(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def load(
    env: Mapping[str, str] | None = None,
    *,
    require_slack: bool = True,
    dotenv: bool = True,
    artifacts: str | os.PathLike | None = None,
    with_key: bool = True,
) -> Settings:
    """Read settings; raise ``SettingsError`` naming the first bad variable. ``artifacts`` (the
    command line's ``--artifacts``) wins over ``SEGMENT_ARTIFACTS``."""
    if env is None:
        if dotenv:
            from dotenv import load_dotenv

            load_dotenv(Path.cwd() / ".env", override=False)
        env = os.environ
    get = lambda k: (env.get(k) or "").strip()  # noqa: E731

    bot_token, secret, app_token = get("SLACK_BOT_TOKEN"), get("SLACK_SIGNING_SECRET"), get("SLACK_APP_TOKEN")
    if require_slack:
        if not bot_token:
            raise SettingsError("SLACK_BOT_TOKEN is not set: copy the Bot User OAuth Token (xoxb-…) into .env")
        if not bot_token.startswith("xoxb-"):
            raise SettingsError("SLACK_BOT_TOKEN must be a bot token starting with xoxb-")
        if app_token and not app_token.startswith("xapp-"):
            raise SettingsError(
                "SLACK_APP_TOKEN must be an app-level token starting with xapp- (or unset for HTTP mode)"
            )
        if not app_token and not secret:
            raise SettingsError("SLACK_SIGNING_SECRET is not set: HTTP mode needs the app's signing secret")

    port_text = get("PORT") or "3000"
    try:
        port = int(port_text)
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise SettingsError(f"PORT must be a port number (0-65535), not '{port_text}'") from None

    bind_address = get("BIND_ADDRESS") or "127.0.0.1"
    try:
        import ipaddress

        ipaddress.ip_address(bind_address)
    except ValueError:
        raise SettingsError(
            f"BIND_ADDRESS must be an IP address such as 127.0.0.1 or 0.0.0.0, not '{bind_address}'"
        ) from None

    api_url = get("SLACK_API_URL") or None
    if api_url:
        if not re.match(r"^https?://[^/]+", api_url):
            raise SettingsError(f"SLACK_API_URL must be an http(s) URL such as https://slack.com/api/, not '{api_url}'")
        api_url = api_url.rstrip("/") + "/"

    admins = frozenset(a.strip() for a in get("SEGMENT_ADMIN_USER_IDS").split(",") if a.strip())
    bad = sorted(a for a in admins if not _USER_ID.match(a))
    if bad:
        raise SettingsError(
            f"SEGMENT_ADMIN_USER_IDS must list Slack user ids like U012ABCDEF, separated by commas; '{bad[0]}' is not one"
        )

    artifacts = Path(artifacts if artifacts is not None else (get("SEGMENT_ARTIFACTS") or "artifacts"))
    database_url = get("DATABASE_URL") or f"sqlite:///{artifacts / 'segment.db'}"
    if "://" not in database_url:
        raise SettingsError(
            f"DATABASE_URL must be a database URL such as sqlite:///artifacts/segment.db, not '{_redact(database_url)}'"
        )

    timezone = get("SEGMENT_TIMEZONE") or "UTC"
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(timezone)
    except Exception:  # noqa: BLE001 - ZoneInfoNotFoundError, ValueError for odd strings
        raise SettingsError(f"SEGMENT_TIMEZONE must be a time zone name like Europe/Berlin, not '{timezone}'") from None
    admin_only_text = get("SEGMENT_DIGEST_ADMIN_ONLY").lower() or "false"
    if admin_only_text not in {"true", "false", "1", "0", "yes", "no"}:
        raise SettingsError(f"SEGMENT_DIGEST_ADMIN_ONLY must be true or false, not '{admin_only_text}'")
    digest_channel, digest_cron = get("DIGEST_CHANNEL") or None, get("DIGEST_CRON") or None
    if bool(digest_channel) != bool(digest_cron):
        missing = "DIGEST_CRON" if digest_channel else "DIGEST_CHANNEL"
        raise SettingsError(f"{missing} is not set: a default digest needs both DIGEST_CHANNEL and DIGEST_CRON")
    digest_as_of = get("SEGMENT_DIGEST_AS_OF").lower() or "auto"
    if digest_as_of not in ("auto", "today"):
        raise SettingsError(f"SEGMENT_DIGEST_AS_OF is auto or today, not '{digest_as_of[:40]}'")
    if digest_cron:
        from segmentation.serving.schedule_spec import parse  # lazy: APScheduler, 45 ms, only for a digest

        try:
            parse(digest_cron, timezone)
        except InputError as exc:
            raise SettingsError(f"DIGEST_CRON: {exc}") from None

    return Settings(
        timezone=timezone,
        digest_admin_only=admin_only_text in {"true", "1", "yes"},
        digest_channel=digest_channel,
        digest_cron=digest_cron,
        digest_as_of=digest_as_of,
        bot_token=bot_token,
        signing_secret=secret,
        app_token=app_token,
        port=port,
        bind_address=bind_address,
        api_url=api_url,
        data=get("SEGMENT_DATA") or None,
        admin_user_ids=admins,
        database_url=database_url,
        artifacts=artifacts,
        model_key=load_key(artifacts, env) if with_key else None,
        key_env=tuple((k, env[k]) for k in (KEY_ENV, PREVIOUS_KEY_ENV, KEY_FILE_ENV) if k in env),
        threads=_whole(get("SEGMENT_THREADS"), None),
        duckdb_memory=_memory(get("SEGMENT_DUCKDB_MEMORY")),
        db_sessions=max(1, min(_whole(get("SEGMENT_DB_SESSIONS"), None) or DEFAULT_SESSIONS, 16)),
        spark_master=get("SEGMENT_SPARK_MASTER") or "local[*]",
        spark_partitions=_whole(get("SEGMENT_SPARK_PARTITIONS"), None) or 8,
        playbook=Path(get("SEGMENT_PLAYBOOK")).expanduser() if get("SEGMENT_PLAYBOOK") else None,
        keep_bytes=(_whole(get("SEGMENT_MODELS_MAX_MB"), None) or KEEP_BYTES // 1024**2) * 1024**2,
        debug=bool(get("SEGMENT_DEBUG")),
        user=get("USER"),
    )


def _whole(text: str, default: int | None) -> int | None:
    """A positive whole number, else the default (as these settings have always been read)."""
    return int(text) if text.isdigit() and int(text) > 0 else default


def _memory(text: str) -> str:
    """DuckDB's memory limit such as 1GB or 512MiB; anything else keeps the default."""
    return text if re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", text, re.I) else "1GB"
