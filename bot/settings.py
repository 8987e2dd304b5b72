"""Bot settings from the environment or a ``.env`` file."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from segment_cli.args import threads_setting
from segmentation.data.urls import mask_text
from segmentation.errors import InputError, SegmentationError
from segmentation.serving.signing import ModelKey, load_key

from .schedule_spec import parse


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
    model_key: ModelKey | None = None  # None: the key file in ``artifacts``
    threads: int = 1  # KMeans's threads when retraining (SEGMENT_THREADS)

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
    if digest_cron:
        try:
            parse(digest_cron, timezone)
        except InputError as exc:
            raise SettingsError(f"DIGEST_CRON: {exc}") from None

    return Settings(
        timezone=timezone,
        digest_admin_only=admin_only_text in {"true", "1", "yes"},
        digest_channel=digest_channel,
        digest_cron=digest_cron,
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
        model_key=load_key(artifacts, env),
        threads=threads_setting(env),
    )
