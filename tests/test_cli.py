from __future__ import annotations

import pytest

from activities.cli import main


class TestList:
    def test_lists_what_a_worker_would_serve(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Names and classes of a package's activities, without calling AWS."""
        assert main(["list", "examples"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines == [
            "Echo        examples.echo.Echo",
            "Reserve     examples.flaky.Reserve",
            "CountWords  examples.progress.CountWords",
        ]

    def test_unknown_module_is_a_clear_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        """An import error is one line naming the module, exit code 2."""
        assert main(["list", "no_such_module_here"]) == 2
        assert "cannot import 'no_such_module_here'" in capsys.readouterr().err

    def test_module_without_activities_is_a_usage_error(self) -> None:
        """Serving nothing is refused."""
        with pytest.raises(SystemExit) as info:
            main(["list", "json"])
        assert info.value.code == 2


class TestWorkerOptions:
    @pytest.mark.parametrize(
        "options",
        [["--processes", "0"], ["--threads", "-1"], ["--processes", "2", "--threads", "2"]],
    )
    def test_bad_pool_options_are_refused(self, options: list[str]) -> None:
        """Non-positive sizes and both pool kinds at once are usage errors."""
        with pytest.raises(SystemExit) as info:
            main(["worker", "examples", *options])
        assert info.value.code == 2

    def test_missing_region_is_a_clear_error(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Without a Region the worker says how to give one, before any call."""
        for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
        assert main(["worker", "examples", "--threads", "1"]) == 2
        assert "no AWS Region is configured" in capsys.readouterr().err

    def test_bad_shutdown_grace_names_the_setting(self, capsys: pytest.CaptureFixture[str]) -> None:
        """An invalid setting fails at start-up with its name, before any client exists."""
        with pytest.raises(SystemExit) as info:
            main(["worker", "examples", "--shutdown-grace", "-5"])
        assert info.value.code == 2
        assert "--shutdown-grace: must be a number of seconds >= 0" in capsys.readouterr().err
