"""What the listeners need, passed in once by the app factory (tests point it elsewhere)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from slack_sdk import WebClient

from segment_cli.settings import Settings
from segmentation.serving.service import SegmentService

from .followup import FollowUps
from .retrain import Retrainer
from .state import StateDB

if TYPE_CHECKING:
    from .digests import Digests
    from .home import Home
    from .scheduling import DigestScheduler


@dataclass
class BotContext:
    settings: Settings
    service: SegmentService
    state: StateDB
    retrainer: Retrainer
    client: WebClient
    follow_ups: FollowUps = field(default_factory=FollowUps)
    digests: Digests = field(init=False)  # set by the app factory right after construction
    home: Home = field(init=False)  # likewise
    scheduler: DigestScheduler | None = None

    def can_manage_digests(self, user_id: str) -> bool:
        return not self.settings.digest_admin_only or self.settings.is_admin(user_id)
