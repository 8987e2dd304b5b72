from __future__ import annotations

import io

from slackkit import copy_artifacts

from bot.app import build_context, create_app
from bot.console import Console
from bot.settings import Settings
from segmentation.inputs import parse_rfm


def test_console_dispatches_through_the_bolt_app(trained, tmp_path):
    art = copy_artifacts(trained, tmp_path / "art")
    contexts = []

    def factory(settings):
        ctx = build_context(settings)
        contexts.append(ctx)
        return create_app(ctx, process_before_response=True)

    out = io.StringIO()
    console = Console(factory, Settings(artifacts=art, database_url=f"sqlite:///{tmp_path / 's.db'}"), out=out)
    try:
        ctx = contexts[0]
        expected = ctx.service.served().predict(parse_rfm("30 2 150"))
        text = console.handle_line("/segment 30 2 150")
        assert text.startswith(expected.segment) and "Recency: 30 days" in text and "[1] Share in channel" in text
        console.handle_line("click 1")
        assert "[bot → channel]" in out.getvalue()
        assert "⚠ Give exactly three values" in console.handle_line("/segment 1 2")
        assert "Churn risk" in console.handle_line("at-risk")
        assert "Model v0001" in console.handle_line("/segment model")
        assert console.handle_line("click 99") == "There is no button [99]."
        assert console.handle_line("/other") == "Only /segment is known here. Try /segment help"
        assert console.handle_line("quit") is None
        # every request went through signature verification with the console's own secret
        assert console.settings.signing_secret == console.secret and console.emulator.api_calls("auth.test")
    finally:
        console.close()


def test_console_loop_reads_until_eof(trained, tmp_path):
    art = copy_artifacts(trained, tmp_path / "art")
    out = io.StringIO()
    console = Console(lambda s: create_app(build_context(s), process_before_response=True),
                      Settings(artifacts=art, database_url=f"sqlite:///{tmp_path / 's.db'}"), out=out)
    try:
        console.loop(io.StringIO("/segment help\n/segment segments\n"))
    finally:
        console.close()
    assert "Customer segments, in Slack" in out.getvalue() and "Segments ·" in out.getvalue()


def test_console_keeps_its_own_state(trained, tmp_path, monkeypatch):
    """`segment chat` never shares the bot's state database or its default digest."""
    import bot.cli
    from bot import console as console_mod

    art = copy_artifacts(trained, tmp_path / "art")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'production.db'}")
    monkeypatch.setenv("DIGEST_CHANNEL", "CREAL")
    monkeypatch.setenv("DIGEST_CRON", "0 9 * * *")
    seen = {}
    real_loop = console_mod.Console.loop

    def loop(self, stdin=None):
        seen["settings"] = self.settings
        real_loop(self, io.StringIO("/segment digest list\n"))

    monkeypatch.setattr(console_mod.Console, "loop", loop)
    assert bot.cli.main(["--artifacts", str(art), "chat"]) == 0
    assert seen["settings"].database_url == f"sqlite:///{art / 'console.db'}"
    assert seen["settings"].digest_channel is None
    assert not (tmp_path / "production.db").exists()
