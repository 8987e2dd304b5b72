"""What the listeners need, passed in once by the app factory (tests point it elsewhere)."""

from __future__ import annotations

from dataclasses import dataclass, field

from segmentation.service import SegmentService
from segmentation.store import ModelStore

from .followup import FollowUps
from .retrain import Retrainer
from .settings import Settings
from .state import StateDB


@dataclass
class BotContext:
    settings: Settings
    store: ModelStore
    service: SegmentService
    state: StateDB
    retrainer: Retrainer
    follow_ups: FollowUps = field(default_factory=FollowUps)
