"""The commands and code of the README and the pages a newcomer reads first work as written.

They drift otherwise: an option renamed, a module that the page never defines, an install
command that cannot install. Offline and in a second or two, for every page of
:data:`PAGES`:

- every ``activities ...`` command of a fenced block parses with the command's own parser
  (subcommand, options and their values), and the modules it names exist where the page
  runs it; in an inline code span, a fragment of prose, its subcommand and options exist;
- every ``nox -s SESSION`` names a session of ``noxfile.py``;
- every ``pip install`` installs what can be installed from where the page stands: a path
  to the checkout, an extra the project defines, and never ``sfn-activities`` by name
  (it is not on PyPI yet) except in a sentence about its release;
- every Python block compiles and its imports resolve; those of the README and the
  landing page run, in order, in one namespace;
- the README's relative links lead to files.

Against the suite's local Step Functions (``integration``), the ``activities invoke``
commands shown with their output print that output. ``tests/test_tutorial.py`` runs the
tutorial's install, code, worker and execution end to end.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import os
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from activities._cli.arguments import command_line
from tests.processes import ROOT

if TYPE_CHECKING:
    import argparse

    from activities.local import LocalStepFunctions

#: The pages checked, and the directory each runs its commands in, relative to the
#: checkout: the tutorial works in a directory of its own beside the checkout.
PAGES = {
    "README.md": ".",
    "docs/index.md": ".",
    "docs/tutorial.md": "../echo-tutorial",
    "docs/invoke.md": ".",
    "docs/worker.md": ".",
    "docs/operations.md": ".",
}

#: The package the pages name for the reader's own project: a placeholder, never defined.
PLACEHOLDER = "myproject"

#: First words of the shell commands a page may show that there is nothing to check of.
SHELL = {"cd", "mkdir", ".", "export"}

#: First words of the commands a fenced block holds (other lines are output).
COMMANDS = {"activities", "python", "python3", "pip", "nox"}

_FENCE = re.compile(
    r"(?:^<!--\s*tutorial:(?P<marks>[^>]*?)-->[ \t]*\n(?:[ \t]*\n)*)?"
    r"^[ \t]*```(?P<info>[^\n`]*)\n(?P<body>.*?)^[ \t]*```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
_SPAN = re.compile(r"`([^`]+)`")


@dataclass
class Command:
    """A command a page shows, where, and what the page shows it printing."""

    page: str
    line: int
    text: str
    inline: bool
    #: The prose before an inline span, in its paragraph.
    before: str = ""
    output: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        """The command's place, for messages."""
        return f"{self.page}:{self.line}: `{self.text}`"


@dataclass
class Code:
    """A Python block of a page."""

    page: str
    line: int
    body: str
    #: The file the page says to save it as (the tutorial's ``file=NAME`` mark).
    file: str | None


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _split(line: str) -> list[str]:
    """The commands of a shell line: ``a && b`` is two."""
    return [part.strip() for part in line.split("&&") if part.strip()]


def commands(page: str) -> list[Command]:
    """Every command of the page: ``$`` lines of console blocks, command lines of the
    other shell blocks, and the inline code spans that start with a command."""
    text = (ROOT / page).read_text()
    found: list[Command] = []
    for match in _FENCE.finditer(text):
        info = match["info"].strip()
        if info not in {"", "console", "sh", "shell", "bash"}:
            continue
        first = _line(text, match.start("body"))
        body = match["body"].replace("\\\n", " ")
        for number, raw in enumerate(body.splitlines()):
            line = raw.strip()
            if info == "console":
                if not line.startswith("$ "):
                    if found and found[-1].line >= first:
                        found[-1].output.append(raw)
                    continue
                line = line[2:]
            if not line or line.split()[0] not in COMMANDS | SHELL:
                continue
            found.extend(Command(page, first + number, part, inline=False) for part in _split(line))
    prose = _FENCE.sub(lambda m: "\n" * m[0].count("\n"), text)
    for match in _SPAN.finditer(prose):
        span = " ".join(match[1].split())
        if span.split()[0] in COMMANDS and len(span.split()) > 1:
            paragraph = prose.rfind("\n\n", 0, match.start()) + 2
            found.extend(
                Command(
                    page,
                    _line(prose, match.start()),
                    part,
                    inline=True,
                    before=" ".join(prose[paragraph : match.start()].split()),
                )
                for part in _split(span)
            )
    return found


def python_blocks(page: str) -> list[Code]:
    """The page's Python blocks, with the file each is saved as, if any."""
    text = (ROOT / page).read_text()
    blocks = []
    for match in _FENCE.finditer(text):
        if match["info"].strip() == "python":
            names = [m.removeprefix("file=") for m in (match["marks"] or "").split()]
            saved = [name for name in names if name.endswith(".py")]
            blocks.append(
                Code(page, _line(text, match.start("body")), match["body"], next(iter(saved), None))
            )
    return blocks


def subcommands() -> dict[str, argparse.ArgumentParser]:
    """The parser of each subcommand of ``activities``."""
    parser = command_line()
    for action in parser._actions:  # argparse keeps its subparsers nowhere else
        if action.choices is not None and not isinstance(action.choices, list):
            return dict(action.choices)
    pytest.fail("the activities command has no subcommands")


def nox_sessions() -> set[str]:
    """The names of the sessions ``noxfile.py`` defines."""
    names = set()
    for node in ast.walk(ast.parse((ROOT / "noxfile.py").read_text())):
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                call = decorator if isinstance(decorator, ast.Call) else None
                target = call.func if call else decorator
                if ast.unparse(target) == "nox.session":
                    named = [k.value for k in (call.keywords if call else []) if k.arg == "name"]
                    names.add(ast.literal_eval(named[0]) if named else node.name)
    return names


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Where each page stands: the checkout, or the tutorial's directory beside a checkout
    named ``sfn-activities``, with the files the tutorial saves in it."""
    layout = tmp_path_factory.mktemp("layout")
    (layout / "sfn-activities").symlink_to(ROOT, target_is_directory=True)
    tutorial = layout / "echo-tutorial"
    tutorial.mkdir()
    for code in python_blocks("docs/tutorial.md"):
        if code.file:
            (tutorial / code.file).write_text(code.body)
    return {
        page: (layout / "sfn-activities" / directory).resolve() if directory == "." else tutorial
        for page, directory in PAGES.items()
    }


def _module_exists(name: str, base: Path) -> bool:
    """Whether module ``name`` is in ``base``, as the worker finds modules there."""
    path = base.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _check_modules(command: Command, names: list[str], base: Path) -> list[str]:
    return [
        f"{command.where}: no module {name} in {base}"
        for name in names
        if name.split(".")[0] != PLACEHOLDER and not _module_exists(name, base)
    ]


def _parse(words: list[str]) -> tuple[argparse.Namespace | None, str]:
    """The namespace of an ``activities`` command line, or None and what the parser said."""
    said = io.StringIO()
    with contextlib.redirect_stderr(said), contextlib.redirect_stdout(io.StringIO()):
        try:
            return command_line().parse_args(words), ""
        except SystemExit:
            return None, said.getvalue().strip() or "exit"


def check_activities(command: Command, words: list[str], base: Path) -> list[str]:
    """An ``activities`` command: parse it whole, or check its names in a fragment.

    A fragment is an inline span that does not parse (`activities worker` in prose), or
    a line with ``...`` or ``--help``: its subcommand and options must exist.
    """
    known = subcommands()
    if words in (["--help"], ["-h"]):
        return []
    if not words or words[0] not in known:
        return [f"{command.where}: no subcommand {words[:1]} (have {sorted(known)})"]
    elided = "..." in words or "--help" in words
    args, error = (None, "elided") if elided else _parse(words)
    if args is None and (command.inline or elided):
        options = set(known[words[0]]._option_string_actions)
        return [
            f"{command.where}: `activities {words[0]}` has no option {word}"
            for word in words[1:]
            if word.startswith("-") and word.split("=")[0] not in options
        ]
    if args is None:
        return [f"{command.where}: {error}"]
    names = [*getattr(args, "modules", []), *(getattr(args, "module", None) or [])]
    return _check_modules(command, names, base)


def check_pip(command: Command, words: list[str], base: Path) -> list[str]:
    """A ``pip install``: paths lead to the checkout, extras exist, nothing unpublished."""
    if words[:1] != ["install"]:
        return [f"{command.where}: the test knows only pip install"]
    extras = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    )
    problems = []
    for word in words[1:]:
        if word.startswith("-"):
            continue
        requirement, _, extra = word.partition("[")
        wanted = set(extra.rstrip("]").split(",")) - {""}
        if wanted - extras:
            problems.append(f"{command.where}: the project has no extra {wanted - extras}")
        if requirement.startswith(".") or "/" in requirement:
            if not (base / requirement / "pyproject.toml").is_file():
                problems.append(f"{command.where}: no project at {base / requirement}")
        elif requirement == "sfn-activities" and "released" not in command.before[-80:]:
            problems.append(f"{command.where}: sfn-activities is not on PyPI yet")
    return problems


def check_nox(command: Command, words: list[str], _: Path) -> list[str]:
    """A ``nox -s A B [-- ...]``: its sessions are in noxfile.py."""
    asked = words[words.index("-s") + 1 :] if "-s" in words else []
    asked = asked[: asked.index("--")] if "--" in asked else asked
    missing = set(asked) - nox_sessions()
    return [f"{command.where}: noxfile.py has no session {sorted(missing)}"] if missing else []


def check_python(command: Command, words: list[str], saved: set[str]) -> list[str]:
    """``python3 -m venv DIR``, or ``python3 FILE`` of a file the page saves."""
    if words[1:3] == ["-m", "venv"]:
        return []
    if len(words) == 2 and words[1].endswith(".py"):  # python3 FILE
        return [] if words[1] in saved else [f"{command.where}: the page saves no {words[1]}"]
    return [f"{command.where}: the test does not know how to check it"]


#: How to check a command, by its first word (after ``python3 -m``).
CHECKS = {"activities": check_activities, "pip": check_pip, "nox": check_nox}


def check(command: Command, base: Path, saved: set[str]) -> list[str]:
    """What is wrong with one command, as it would run in ``base``."""
    words = shlex.split(command.text)
    if words[0] in {"python", "python3"} and words[1:2] == ["-m"] and words[2:3] != ["venv"]:
        words = words[2:]
    if not words or words[0] in SHELL:  # prose ("as with `python -m`"), or cd, export
        return []
    if words[0] in {"python", "python3"}:
        return check_python(command, words, saved)
    if words[0] in CHECKS:
        return CHECKS[words[0]](command, words[1:], base)
    return [f"{command.where}: the test does not know how to check it"]


@pytest.mark.parametrize("page", PAGES)
def test_commands_exist_as_shown(page: str, places: dict[str, Path]) -> None:
    """Subcommands, options, modules, sessions and install targets are all there."""
    saved = {code.file for code in python_blocks(page) if code.file}
    found = commands(page)
    problems = [problem for c in found for problem in check(c, places[page], saved)]
    assert not problems, "\n".join(problems)


def test_the_pages_show_the_commands_checked() -> None:
    """The parsing finds what a newcomer runs: the test cannot pass by finding nothing."""
    shown = {c.text for page in PAGES for c in commands(page)}
    assert "python3 -m pip install ." in shown
    assert "python3 -m nox -s demo" in shown
    assert "python3 -m pip install ../sfn-activities" in shown
    assert "activities worker echo_tutorial" in shown
    assert any(text.startswith("activities invoke Echo") for text in shown)
    assert {c.page for page in PAGES for c in commands(page)} == set(PAGES)


def test_the_checks_catch_what_drifts(places: dict[str, Path]) -> None:
    """A made-up option, module, session or install target is reported, each alone."""
    wrong = [
        ("README.md", "activities worker examples --procesess 2", False),
        ("README.md", "activities invoke Echo --module hello", False),
        ("README.md", "activities invoke Echo --input '{}' --module hello", True),
        ("README.md", "activities worker --procesess", True),
        ("README.md", "activities wrker examples", False),
        ("README.md", "python3 -m nox -s tests demos", False),
        ("README.md", "pip install 'sfn-activities[prometheus]'", False),
        ("README.md", "python3 -m pip install '.[prometheuss]'", False),
        ("docs/tutorial.md", "python3 -m pip install .", False),
        ("docs/tutorial.md", "python3 start.py", False),
    ]
    for page, text, inline in wrong:
        command = Command(page, 1, text, inline=inline)
        assert check(command, places[page], set()), text
    right = [
        ("README.md", "activities worker examples --processes 2", False),
        ("README.md", "activities invoke Echo --module examples.echo", False),
        ("README.md", "activities worker", True),
        ("README.md", "python3 -m nox -s tests demo", False),
        ("README.md", "python3 -m pip install '.[prometheus]'", False),
        ("docs/tutorial.md", "python3 -m pip install ../sfn-activities", False),
    ]
    for page, text, inline in right:
        command = Command(page, 1, text, inline=inline)
        assert check(command, places[page], set()) == [], text


@pytest.mark.parametrize("page", PAGES)
def test_python_blocks_compile_and_their_imports_resolve(page: str) -> None:
    """Every name a block imports exists, but those of the reader's own project."""
    saved = {Path(c.file).stem for c in python_blocks("docs/tutorial.md") if c.file}
    for code in python_blocks(page):
        where = f"{page}:{code.line}"
        tree = ast.parse(code.body, where)
        compile(tree, where, "exec", dont_inherit=True)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                top = node.module.split(".")[0]
                if top == PLACEHOLDER or top in saved:
                    continue
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name) or importlib.util.find_spec(
                        f"{node.module}.{alias.name}"
                    ), f"{where}: {node.module} has no {alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert importlib.util.find_spec(alias.name), f"{where}: no {alias.name}"


@pytest.mark.parametrize("page", ["README.md", "docs/index.md"])
def test_python_blocks_run(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's and the landing page's blocks run in order, as one script would."""
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "readme"}  # not __main__: no worker starts
    blocks = python_blocks(page)
    assert blocks
    for code in blocks:
        exec(compile(code.body, f"{page}:{code.line}", "exec", dont_inherit=True), namespace)  # noqa: S102


@pytest.mark.parametrize(("subcommand", "page"), [("worker", "worker.md"), ("invoke", "invoke.md")])
def test_the_option_tables_list_every_option(subcommand: str, page: str) -> None:
    """The options table of the command's page has a row for each option, and only those."""
    parser = subcommands()[subcommand]
    options = {o for a in parser._actions for o in a.option_strings if o.startswith("--")}
    lines = (ROOT / "docs" / page).read_text().splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith("| option |"))
    end = next(n for n in range(start, len(lines)) if not lines[n].startswith("|"))
    first_cells = [line.split("|")[1] for line in lines[start + 2 : end]]
    listed = set(re.findall(r"`(--[\w-]+)", "\n".join(first_cells)))
    assert listed == options - {"--help"}


def test_readme_links_lead_to_files() -> None:
    """The README is read on GitHub, outside the docs build that checks the docs' links."""
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    assert targets
    missing = [t for t in targets if "://" not in t and not (ROOT / t).exists()]
    assert not missing


def test_no_page_installs_the_unpublished_extra() -> None:
    """``pip install 'sfn-activities[prometheus]'`` fails until the package is on PyPI."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    offending = [p.name for p in pages if "install 'sfn-activities[" in p.read_text()]
    assert not offending


def _shown_pattern(line: str) -> re.Pattern[str]:
    """A shown output line as a pattern: ``...`` stands for what the page leaves out."""
    return re.compile(".*".join(re.escape(part) for part in line.split("...")))


@pytest.mark.integration
def test_invoke_prints_what_the_pages_show(local_sfn: LocalStepFunctions) -> None:
    """Each ``activities invoke`` shown with its output prints that output, in the
    checkout, against the suite's local Step Functions (for ``--local``, which starts one
    of its own, too)."""
    shown = [
        c
        for page in PAGES
        for c in commands(page)
        if not c.inline and c.text.startswith("activities invoke ") and c.output
    ]
    assert len(shown) >= 3
    script = Path(sys.executable).with_name("activities")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        **local_sfn.environment(),
        "PYTHONPATH": "",
    }
    for command in shown:
        words = [w for w in shlex.split(command.text)[1:] if w != "--local"]
        ran = subprocess.run(
            [str(script), *words]
            if script.exists()
            else [sys.executable, "-m", "activities", *words],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        printed = (ran.stdout + ran.stderr).splitlines()
        expected = [line for line in command.output if line.strip()]
        assert len(printed) == len(expected), f"{command.where} printed:\n{ran.stdout}{ran.stderr}"
        for line, want in zip(printed, expected, strict=True):
            assert _shown_pattern(want).fullmatch(line), f"{command.where}: {line!r}"
        assert ran.returncode == (0 if "FAILED" not in ran.stdout else 1), command.where
