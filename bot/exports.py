"""CSV exports uploaded to the person who asked, in a direct message."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from slack_sdk import WebClient

from segmentation.model.segments import Segment
from segmentation.serving.served import ServedModel


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "segment"


def send_csv(
    client: WebClient,
    user_id: str,
    filename: str,
    title: str,
    write: Callable[[Path], tuple[list[str], int]],
    source_note: str,
) -> str:
    """Build a CSV with ``write`` (returns segment names and row count) and upload it to the user's DM."""
    dm = client.conversations_open(users=user_id)["channel"]["id"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / filename
        names, n = write(path)
        client.files_upload_v2(
            channel=dm,
            file=str(path),
            filename=filename,
            title=title,
            initial_comment=f"{n:,} customers of {'; '.join(names)} {source_note}.",
        )
    return f"Sent you `{filename}` ({n:,} customers) in a direct message."


def send_segments_csv(
    client: WebClient, served: ServedModel, user_id: str, segments: Sequence[Segment], label: str
) -> str:
    """The customers of ``segments`` as model ``served`` assigned them at training time."""
    return send_csv(
        client,
        user_id,
        f"{_slug(label)}-{served.version}.csv",
        f"{label} customers ({served.version})",
        lambda path: served.export(segments, path),
        f"from model {served.version}",
    )
