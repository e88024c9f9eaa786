import pytest
from typer.testing import CliRunner

from cli import app

runner = CliRunner()


def _corrupt_index(path):
    path.mkdir()
    (path / "v-1").mkdir()
    (path / "v-1" / "manifest.json").write_text("{not json")
    (path / "CURRENT").write_text("v-1")
    return path


@pytest.mark.parametrize(
    "args, expected",
    [
        (["ask", ""], "question is empty"),
        (["ask", "   \t "], "question is empty"),
        (["ask", "Who?", "--docs", "{tmp}/absent"], "does not exist"),
        (["ask", "Who?", "--docs", "{tmp}/empty"], "no readable articles"),
        (["index", "build", "--docs", "{tmp}/empty", "--index", "{tmp}/ix"], "no readable"),
        (["index", "status", "--index", "{tmp}/absent-index"], "run `qa index build`"),
        (["index", "status", "--index", "{tmp}/corrupt"], "is damaged"),
        (["ask", "Who?", "--since", "last week"], "is not a date"),
        (["ask", "Who?", "--since", "2021", "--until", "2020"], "nothing can match"),
        (["eval", "{tmp}/absent.jsonl"], "no questions file"),
        (["eval", "{tmp}/bad.jsonl"], "line 1"),
        (["ask", "Who?", "--index", "{tmp}/corrupt"], "is damaged"),
    ],
)
def test_errors_are_one_line_on_stderr(tmp_path, args, expected):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.jsonl").write_text("not json\n")
    _corrupt_index(tmp_path / "corrupt")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert expected in result.stderr
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_every_command_has_help_with_an_example():
    for args in (["ask"], ["chat"], ["eval"], ["index", "build"], ["index", "update"], ["index", "status"]):
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0
        assert "Example: qa" in result.stdout


def test_help_shows_the_install_extra_literally():
    """Rich reads "[ray]" as a style tag unless it is escaped: the install line lost it."""
    result = runner.invoke(app, ["index", "build", "--help"], env={"COLUMNS": "200"})
    assert "pip install 'newsqa[ray]'" in result.stdout and "\\[ray]" not in result.stdout


def test_no_args_shows_help():
    result = runner.invoke(app, [])
    assert "ask" in result.stdout and "index" in result.stdout


def test_wrapped_passages_keep_no_trailing_spaces():
    from rich.console import Console

    from qa.results import Answer, Citation, Highlight, Passage
    from qa.terminal import render

    text = "The harbor ferry carried its first passengers in two years on Friday. " * 3
    text = text.strip()
    citation = Citation("harbor_times", "/docs/harbor_times.txt", None, "Ferry Route Reopens",
                        "2021-03-05", None, None, 100, 100 + len(text))
    highlight = Highlight(text[:69], 100, 169)
    answer = Answer("When did the ferry return?", True,
                    [Passage(1, 1.2, text, highlight, citation)])
    for terminal in (True, False):
        console = Console(width=40, record=True, force_terminal=terminal, color_system=None)
        render(answer, console)
        lines = console.export_text().splitlines()
        assert len(lines) > 6  # the passage really wrapped
        assert [line for line in lines if line != line.rstrip()] == []
        assert " ".join(" ".join(lines).split()).count("carried its first passengers") == 3
