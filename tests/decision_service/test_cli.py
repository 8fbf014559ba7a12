"""``rollout-agent``: every subcommand reachable, every flag documented; check-queries."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest

from decision_service import check_queries, cli
from tests.conftest import REPO_ROOT
from tests.support.fake_prometheus import FakePrometheus, Traffic, demo_prometheus


class _Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def _parser_of(module_name: str) -> argparse.ArgumentParser:
    module = importlib.import_module(module_name)
    original = argparse.ArgumentParser.parse_args

    def capture(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        raise _Parsed(self)

    argparse.ArgumentParser.parse_args = capture  # type: ignore[assignment,method-assign]
    try:
        module.main([])
    except _Parsed as parsed:
        return parsed.parser
    finally:
        argparse.ArgumentParser.parse_args = original  # type: ignore[method-assign]
    raise AssertionError(f"{module_name}.main never parsed its arguments")


@pytest.mark.parametrize("name", list(cli.SUBCOMMANDS))
def test_every_subcommand_documents_every_flag(name: str) -> None:
    module_name, _extra, _ = cli.SUBCOMMANDS[name]
    try:
        importlib.import_module(module_name)
    except ModuleNotFoundError as missing:
        pytest.skip(f"{module_name}: {missing}")
    parser = _parser_of(module_name)
    undocumented = [
        a.option_strings or a.dest
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()
    ]
    assert not undocumented, (name, undocumented)


def test_the_command_lists_its_subcommands_and_its_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "decision_service.cli", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for name in cli.SUBCOMMANDS:
        assert name in result.stdout
    assert cli.main(["--version"]) == 0
    assert cli.main(["no-such-thing"]) == 2


def test_check_queries_says_what_is_there_and_what_is_missing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["--namespace", "shop", "--rollout", "web", "--canary-hash", "c1", "--stable-hash", "s1"]
    with FakePrometheus(demo_prometheus(Traffic(300, 1), Traffic(1200, 4))) as fake:
        monkeypatch.setenv("PROMETHEUS_URL", fake.url)
        assert check_queries.main(args) == 0
        out = capsys.readouterr().out
        assert "OK: every series a decision needs is there" in out
        assert 'rollouts_pod_template_hash=~"c1|s1"' in out
        fake.handler = demo_prometheus(Traffic(300, 1), None, stable_life=Traffic(1200, 4))
        assert check_queries.main(args) == 1
        out = capsys.readouterr().out
        assert "stable window: no request series" in out
        fake.handler = demo_prometheus(None, None)
        assert check_queries.main(args) == 1
        assert "the canary has no series" in capsys.readouterr().out
