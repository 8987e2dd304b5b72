from __future__ import annotations

import io

from slackkit import copy_artifacts

from bot.app import build_context, create_app
from bot.console import Console
from segment_cli.settings import Settings
from segmentation.serving.inputs import parse_rfm


def _until(check, timeout=10.0):
    import time

    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


def test_console_saves_uploads_and_reprints_the_prompt(trained, tmp_path):
    art = copy_artifacts(trained, tmp_path / "art")

    def factory(settings):
        return create_app(build_context(settings), process_before_response=True)

    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = io.StringIO()
    console = Console(factory, Settings(artifacts=art, database_url=f"sqlite:///{tmp_path / 's.db'}"), out=out)
    try:
        console.handle_line("/segment at-risk")
        export = next(n for n, b in enumerate(console.buttons, 1) if b["action_id"] == "export_at_risk")
        stdin = Tty(f"click {export}\n")
        import threading

        blocker = threading.Event()
        real_readline = stdin.readline
        calls = []

        def readline():  # the second read waits, like a user at the prompt, until the upload is shown
            calls.append(1)
            if len(calls) == 2:
                _until(lambda: "saved as" in out.getvalue(), timeout=30)
                blocker.set()
            return real_readline()

        stdin.readline = readline
        console.loop(stdin)
        assert blocker.is_set()
        saved = sorted((art / "console").iterdir())
        assert [p.suffix for p in saved] == [".csv"] and saved[0].read_text().startswith("customer_id,segment")
        text = out.getvalue()
        assert f"saved as {saved[0]}" in text
        after = text[text.index("saved as") :]
        assert after.rstrip("\n").endswith("> ") or "\n> " in after  # the prompt is shown again below the upload
    finally:
        console.close()


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
        console.emulator.wait_for(lambda calls: [c for c in calls if c.kind == "response_url"])
        _until(lambda: "[bot → channel]" in out.getvalue())
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
    console = Console(
        lambda s: create_app(build_context(s), process_before_response=True),
        Settings(artifacts=art, database_url=f"sqlite:///{tmp_path / 's.db'}"),
        out=out,
    )
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


def test_the_home_tab_in_the_console(trained, tmp_path):
    """`home` opens the app's Home tab as Slack would tell the app; its buttons click like Slack's
    (from a view, no response URL) and answer in the direct messages."""
    art = copy_artifacts(trained, tmp_path / "art")

    def factory(settings):
        return create_app(build_context(settings), process_before_response=True)

    out = io.StringIO()
    console = Console(factory, Settings(artifacts=art, database_url=f"sqlite:///{tmp_path / 's.db'}"), out=out)
    try:
        console.handle_line("home")
        text = out.getvalue()
        assert "[Home tab]" in text and "Segment assistant" in text and "Model v0001" in text
        assert "Retrain" in text  # the console user is an admin
        segments = next(n for n, b in enumerate(console.buttons, 1) if b["action_id"] == "home_show_segments")
        console.handle_line(f"click {segments}")
        _until(lambda: "[bot → #D0CONSOLE]" in out.getvalue())
        assert "Segments ·" in out.getvalue().split("[bot → #D0CONSOLE]", 1)[1]
    finally:
        console.close()


def test_the_console_shows_escaped_text_as_slack_shows_it():
    from bot.mrkdwn import as_text
    from bot.render import render

    typed = "<!everyone> & <http://x|y> &lt;"
    assert render({"text": f"No customer '{as_text(typed)}'"}) == f"No customer '{typed}'"
