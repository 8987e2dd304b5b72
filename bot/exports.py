"""CSV exports uploaded to the person who asked, in a direct message."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

from slack_sdk import WebClient

from segmentation.service import SegmentService


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "segment"


def send_segments_csv(client: WebClient, service: SegmentService, user_id: str,
                      segments: list[dict[str, Any]], label: str) -> str:
    """Write the customers of ``segments`` as CSV and upload it to ``user_id``'s DM."""
    version = service.version
    filename = f"{_slug(label)}-{version}.csv"
    dm = client.conversations_open(users=user_id)["channel"]["id"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / filename
        names, n = service.export_segments(segments, path)
        client.files_upload_v2(
            channel=dm,
            file=str(path),
            filename=filename,
            title=f"{label} customers ({version})",
            initial_comment=f"{n:,} customers of {', '.join(names)} from model {version}.",
        )
    return f"Sent you `{filename}` ({n:,} customers) in a direct message."
