"""Block Kit limits: many segments and long texts stay within Slack's limits and say what was left out."""

from __future__ import annotations

import pytest

from bot import blocks
from segmentation.data.kinds import OlistSource
from segmentation.data.sample import write_sample
from segmentation.serving.service import SegmentService
from segmentation.serving.store import ModelStore
from segmentation.serving.training import train


@pytest.fixture(scope="module")
def served_k30(tmp_path_factory):
    # enough customers for 30 segments of at least 25 each
    folder = write_sample(tmp_path_factory.mktemp("shop30"), orders=40_000, seed=3)
    store = ModelStore(tmp_path_factory.mktemp("k30"))
    train(OlistSource(folder), store, k=30)
    return SegmentService(store).served()


def _texts(message) -> str:
    out = []
    for b in message["blocks"]:
        if isinstance(b.get("text"), dict):
            out.append(b["text"]["text"])
    return "\n".join(out)


def test_thirty_segments_fit_in_one_message_and_none_is_dropped_silently(served_k30):
    msg = blocks.segments(served_k30)
    assert len(msg["blocks"]) <= blocks.MAX_BLOCKS
    text = _texts(msg)
    segs = served_k30.segments()
    assert len(segs) > 24
    for s in segs:
        assert s.name in text, s.name
    assert "more:_" not in text  # up to K=30 every segment has its own block (more: the next test)
    assert all(len(b["text"]["text"]) <= blocks.MAX_TEXT for b in msg["blocks"] if isinstance(b.get("text"), dict))


def test_many_segments_beyond_the_block_limit_are_summarised(served_k30, monkeypatch):
    import dataclasses

    segs = served_k30.segments()
    many = tuple(dataclasses.replace(s, name=f"{s.name} #{i}") for i in range(3) for s in segs)
    monkeypatch.setattr(type(served_k30), "segments", lambda self, book=None: many)
    msg = blocks.segments(served_k30)
    assert len(msg["blocks"]) == blocks.MAX_BLOCKS
    last = msg["blocks"][-1]["text"]["text"]
    hidden = len(many) - (blocks.MAX_BLOCKS - 3)
    assert last.startswith(f"_…and {hidden} more:_") and many[-1].name in last


def test_long_text_is_cut_at_a_word_with_an_ellipsis():
    text = "word " * 1000
    out = blocks.section(text)["text"]["text"]
    assert len(out) <= blocks.MAX_TEXT and out.endswith("word…")
    assert blocks.cut("short", 10) == "short"


def test_persona_text_from_the_data_cannot_mention_or_link():
    from bot.mrkdwn import as_text as escaped

    assert escaped("<!channel> *FREE* <https://evil.example|click> & co") == (
        "&lt;!channel&gt; *FREE* &lt;https://evil.example|click&gt; &amp; co"
    )
