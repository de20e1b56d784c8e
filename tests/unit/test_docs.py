"""The README and the manual (docs/, with BENCHMARKS.md, which it includes) against the code.

What can be checked without running anything is: the settings table is the one written from the settings
object; every ``cesar ...`` command shown parses with the real command line (its commands, options and
option values); every ``CESAR_*`` variable named exists; every HTTP route shown (curl examples and
``GET /path`` mentions) is a route of the API with that method; JSON examples parse, Python examples compile,
and the webhook signature recipe is the one the tests verify deliveries with. The README keeps its promises
to newcomers: the two commands first, short, the port easy to find, a link to every page of the manual.
``mkdocs build --strict`` (in ``make lint``) checks the manual's own links and navigation.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import click
import pytest

from cesar.cli import cli
from cesar_common.settings import Settings

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
SETTINGS_PAGE = DOCS / "settings.md"
#: every Markdown file a reader sees: the README, the manual's pages, and BENCHMARKS.md (a page of the manual)
FILES = [README, *sorted(DOCS.glob("*.md")), ROOT / "BENCHMARKS.md"]
#: variables the documents name that are not settings nor command-line options, and the file that reads each
OTHER_VARIABLES = {
    "CESAR_TEST_POSTGRES_URL": "tests/conftest.py",  # the tests' PostgreSQL server
    "CESAR_PUBLISH": "compose.yaml",  # where the compose stack publishes the API
    "CESAR_MEDIA_DIR": "compose.yaml",  # the folder compose's watcher watches
}
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
ENV_ASSIGNMENT = re.compile(r"^[A-Z][A-Z0-9_]*=")


@dataclass(frozen=True)
class Snippet:
    """A piece of a document: a fenced block (``lang`` its language) or an inline code span (``lang`` "")."""

    path: Path
    line: int
    lang: str
    text: str
    fenced: bool

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def text_of(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@cache
def snippets() -> tuple[Snippet, ...]:
    found: list[Snippet] = []
    for path in FILES:
        text = text_of(path)
        prose = text
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start(2)) + 1
            found.append(Snippet(path, line, match.group(1), match.group(2), fenced=True))
            prose = prose.replace(match.group(0), "\n" * match.group(0).count("\n"), 1)
        for match in INLINE_CODE.finditer(prose):
            line = prose.count("\n", 0, match.start()) + 1
            found.append(Snippet(path, line, "", match.group(1), fenced=False))
    return tuple(found)


def fenced(*langs: str) -> list[Snippet]:
    return [snippet for snippet in snippets() if snippet.fenced and snippet.lang in langs]


def shell_lines(snippet: Snippet) -> Iterator[tuple[str, str]]:
    """(where, command) for each command of a shell snippet: continuation lines joined, comments dropped."""
    pending, start = "", 0
    for offset, line in enumerate(snippet.text.splitlines()):
        if not pending:
            start = offset
        if snippet.fenced and line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.strip() and not line.lstrip().startswith("#"):
            yield f"{snippet.path.relative_to(ROOT)}:{snippet.line + start}", line


def shell_snippets() -> list[Snippet]:
    return fenced("sh", "bash", "") + [snippet for snippet in snippets() if not snippet.fenced]


# --- the settings table ------------------------------------------------------------------------------------
def test_the_settings_table_is_the_one_written_from_the_settings() -> None:
    spec = importlib.util.spec_from_file_location(
        "update_settings_doc", ROOT / "scripts" / "update_settings_doc.py"
    )
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    page = text_of(SETTINGS_PAGE)
    assert script.updated(page) == page, "the settings table is stale: run `make docs-settings`"


# --- the README --------------------------------------------------------------------------------------------
def test_the_two_commands_come_first() -> None:
    readme = text_of(README)
    sections = re.split(r"^## ", readme, flags=re.MULTILINE)
    assert sections[1].startswith("The two commands"), "the first section of the README is the two commands"
    assert "make serve" in sections[1] and "make test" in sections[1]


def test_the_readme_is_a_short_tour() -> None:
    assert len(text_of(README).splitlines()) <= 252, "the README is the short tour: details go in docs/"


def test_a_newcomer_finds_how_to_change_the_port() -> None:
    readme = text_of(README)
    start = readme[: readme.index("## The ways in")]
    assert "CESAR_PORT" in start and "--port" in start and "(docs/settings.md)" in start


def test_the_readme_links_every_page_of_the_manual() -> None:
    readme = text_of(README)
    for page in sorted(DOCS.glob("*.md")):
        if page.name != "benchmarks.md":  # the README links BENCHMARKS.md itself
            assert f"](docs/{page.name})" in readme, f"the README does not link docs/{page.name}"


def test_the_readmes_links_lead_to_files_that_exist() -> None:
    for target in re.findall(r"\]\(([^)\s]+)\)", text_of(README)):
        if not re.match(r"[a-z]+:", target):
            path = target.split("#", 1)[0]
            assert (ROOT / path).exists(), f"README.md links {target}, which is not in the repository"


# --- commands ----------------------------------------------------------------------------------------------
def cesar_commands() -> list[tuple[str, list[str]]]:
    """Every ``cesar ...`` command in the documents: (where, its arguments after ``cesar``)."""
    commands: list[tuple[str, list[str]]] = []
    for snippet in shell_snippets():
        for where, line in shell_lines(snippet):
            if not re.search(r"(^|[\s/])cesar(\s|$)", line):
                continue
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            lexer.commenters = "#"
            try:
                tokens = list(lexer)
            except ValueError:  # an unbalanced quote: prose, not a command
                continue
            for segment in split_segments(tokens):
                args = cesar_args(segment)
                if args is not None:
                    commands.append((where, args))
    return commands


def split_segments(tokens: list[str]) -> Iterator[list[str]]:
    segment: list[str] = []
    for token in tokens:
        if set(token) <= set("|&;<>()"):  # an operator ends a command
            yield segment
            segment = []
        else:
            segment.append(token)
    yield segment


def cesar_args(segment: list[str]) -> list[str] | None:
    """The arguments of the ``cesar`` command a shell segment runs, or None when it runs none."""
    while segment and ENV_ASSIGNMENT.match(segment[0]):
        segment = segment[1:]
    if segment[:2] == ["honcho", "run"]:
        segment = segment[2:]
    if segment and segment[0] in {"docker", "podman"}:
        # `docker run ... IMAGE cesar db upgrade`: the image (cesar, cesar:gpu) is followed by the command
        for index in range(1, len(segment)):
            if segment[index] == "cesar" and re.fullmatch(r"cesar(:[\w.-]+)?", segment[index - 1]):
                return trim(segment[index + 1 :])
        return None
    if segment and (segment[0] == "cesar" or segment[0].endswith("/bin/cesar")):
        return trim(segment[1:])
    return None


def trim(args: list[str]) -> list[str]:
    """Up to an ellipsis (``cesar remote ...``: the rest left out), without --help (it would exit)."""
    kept: list[str] = []
    for arg in args:
        if arg.endswith("..."):
            break
        if arg not in {"--help", "-h"}:
            kept.append(arg)
    return kept


def test_the_documents_show_cesar_commands() -> None:
    shown = {" ".join(args[:1]) for _where, args in cesar_commands()}
    assert {"transcribe", "serve", "submit", "remote", "models", "db", "jobs", "api", "worker"} <= shown


@pytest.mark.parametrize(("where", "args"), cesar_commands(), ids=lambda value: str(value))
def test_every_cesar_command_shown_is_real(
    where: str, args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [name for name in os.environ if name.startswith("CESAR_")]:
        monkeypatch.delenv(name)  # options read CESAR_* variables: only what the document shows counts
    command: click.Command = cli
    names = ["cesar"]
    rest = list(args)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.get_command(click.Context(command), rest[0])
        assert sub is not None, (
            f"{where}: `cesar {' '.join(args)}`: no command {' '.join([*names, rest[0]])!r}"
        )
        command, names, rest = sub, [*names, rest[0]], rest[1:]
    if isinstance(command, click.Group) and not rest:
        return  # the group itself (`cesar remote`)
    try:
        command.make_context(" ".join(names), rest)
    except click.MissingParameter:
        pass  # a fragment in prose (`cesar remote show` without its job id): its options are real
    except click.ClickException as exc:
        pytest.fail(f"{where}: `cesar {' '.join(args)}`: {exc.format_message()}")


# --- variables ---------------------------------------------------------------------------------------------
def option_variables(command: click.Command) -> set[str]:
    """The variables the options of ``command`` and its subcommands read (each its own, or CESAR_<NAME>)."""
    names: set[str] = set()
    for param in command.params:
        if isinstance(param, click.Option) and param.name:
            given = param.envvar or f"CESAR_{param.name.upper()}"
            names |= {given} if isinstance(given, str) else set(given)
    for sub in getattr(command, "commands", {}).values():
        names |= option_variables(sub)
    return names


def test_every_cesar_variable_named_exists() -> None:
    known = {f"CESAR_{name.upper()}" for name in Settings.model_fields} | option_variables(cli)
    for name, reader in OTHER_VARIABLES.items():
        assert name in text_of(ROOT / reader), f"{name} is no longer read in {reader}"
    for path in FILES:
        for name in set(re.findall(r"\bCESAR_[A-Z0-9_]*[A-Z0-9]\b", text_of(path))):
            assert name in known or name in OTHER_VARIABLES, (
                f"{path.relative_to(ROOT)} names {name}, which nothing reads"
            )


# --- HTTP routes -------------------------------------------------------------------------------------------
@cache
def api_routes() -> list[tuple[re.Pattern[str], frozenset[str]]]:
    from litestar.routes import WebSocketRoute

    from cesar_api.app import create_app

    # the engine connects lazily: nothing is opened, nothing is written
    app = create_app(Settings(database_url="sqlite:////nonexistent/cesar.db"))
    routes = []
    for route in app.routes:
        pattern = re.sub(r"\\\{(\w+):path\\\}", ".+", re.escape(route.path))
        pattern = re.sub(r"\\\{\w+:\w+\\\}", "[^/]+", pattern)
        # a WebSocket route (GET /live) is reached by a GET that asks to upgrade
        methods = {"GET"} if isinstance(route, WebSocketRoute) else getattr(route, "methods", ())
        routes.append((re.compile(pattern + "$"), frozenset(methods)))
    return routes


def shown_requests() -> list[tuple[str, str, str]]:
    """(where, method, path) of every curl example and every ``GET /path`` mention in the documents."""
    shown: list[tuple[str, str, str]] = []
    for snippet in shell_snippets():
        for where, line in shell_lines(snippet):
            for mention in re.findall(r"\b(GET|POST|DELETE) (/[^\s`]*)", line):
                shown.append((where, *mention))
            if not line.lstrip().startswith("curl "):
                continue
            method = "GET"
            if re.search(r"\s(-F|-d)\s", line):
                method = "POST"
            if explicit := re.search(r"-X (\w+)", line):
                method = explicit.group(1)
            for url in re.findall(r"(?:\$API|https?://[^/\s\"']+:5000)(/[^\s\"']*)", line):
                shown.append((where, method, url))
    return shown


def test_the_documents_show_requests() -> None:
    assert len(shown_requests()) > 40


def test_every_route_shown_is_an_api_route() -> None:
    for where, method, shown in shown_requests():
        path = re.sub(r"\{\w+\}", "x", shown.split("?", 1)[0]).rstrip(".,:;)") or "/"
        methods = [methods for pattern, methods in api_routes() if pattern.match(path)]
        assert methods, f"{where}: {method} {shown}: no such route"
        assert any(method in allowed for allowed in methods), f"{where}: {method} {shown}: not allowed"


# --- examples that parse -----------------------------------------------------------------------------------
def test_json_examples_parse() -> None:
    examples = fenced("json")
    assert examples
    for snippet in examples:
        try:
            json.loads(snippet.text)
        except json.JSONDecodeError:
            json.loads("{" + snippet.text + "}")  # a member of the job JSON, shown on its own


def test_python_examples_compile() -> None:
    examples = fenced("python")
    assert len(examples) >= 3
    for snippet in examples:
        compile(snippet.text, snippet.where, "exec")


def test_the_webhook_recipe_is_the_one_the_tests_use() -> None:
    """The webhook tests verify deliveries with tests/webhook_recipe.py: the manual shows it verbatim."""
    (recipe,) = [snippet.text for snippet in fenced("python") if "def verify(" in snippet.text]
    tested = text_of(ROOT / "tests" / "webhook_recipe.py")
    assert (
        textwrap.dedent(recipe[recipe.index("def verify(") :]).strip()
        == tested[tested.index("def verify(") :].strip()
    )
