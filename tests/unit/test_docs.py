"""The documentation site builds, and every name it gives the code exists.

* ``mkdocs build --strict`` (mkdocs.yml): no broken link, no broken anchor, no page missing from
  the nav; the HTTP API page generated from the real application lists every route; the built
  site loads nothing from another host (no CDN, no web fonts).
* Every name the docs (``docs/**/*.md``, and README.md) give the code is checked against it:
  file paths (``followup/...py``, ``tests/...py::test_name``, folders), dotted names
  (``followup.job.run_job``, ``evidence.ENDPOINT``, ``Settings.from_env``), calls (``execute()``),
  command lines (``followup serve-dicom --tls-cert``: typer's command tree) and ``make`` targets.
  A renamed function or option fails here instead of drifting (the README once said ``act()``
  where the code has ``execute()``)."""

from __future__ import annotations

import ast
import builtins
import importlib
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CODE_DIRS = ("followup", "workers")
PATH_ROOTS = ("followup", "workers", "tests", "benchmarks", "scripts", "deploy", "docs", ".ci")
FENCE = re.compile(r"^(\s*)(```|~~~)")
# calls the docs name that are not ours: CSS functions the report sanitizer drops
NOT_PYTHON = frozenset({"url", "expression"})
FILE_NAME = re.compile(r"\.(db|json|html|pdf|dcm|md|py|sh|key|log|ya?ml|txt|png|svg|ico|lua|gz|pem)$")
PATH_ALTERNATIVES = "|".join(map(re.escape, PATH_ROOTS))
PATH_SPAN = re.compile(rf"(?:{PATH_ALTERNATIVES})/[\w./-]*(?:::[\w\[\]-]+)?")
BLOCK_PATH = re.compile(rf"(?<![\w/.-])((?:{PATH_ALTERNATIVES})/[\w./-]+\.(?:py|sh|md|lua|ya?ml|json))")


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


@dataclass(frozen=True)
class Span:
    """A piece of a page that may name code: an inline code span, or one line of a code block."""

    text: str
    line: int
    block: bool


def spans(markdown: str) -> Iterator[Span]:
    in_block = False
    for number, line in enumerate(markdown.splitlines(), 1):
        if FENCE.match(line):
            in_block = not in_block
            continue
        if in_block:
            yield Span(line, number, True)
        else:
            for m in re.finditer(r"(`+)(.+?)\1", line):
                yield Span(m.group(2).strip(), number, False)


# --- what the code defines ------------------------------------------------------------------------

@cache
def defined_names() -> frozenset[str]:
    """Every function, method and class defined under followup/ and workers/."""
    names: set[str] = set()
    for folder in CODE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    names.add(node.name)
    return frozenset(names)


@cache
def modules_by_basename() -> dict[str, list[str]]:
    """``segment`` -> ["followup.pipelines.segment"]: the short module names the docs use."""
    found: dict[str, list[str]] = {}
    for folder in CODE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found.setdefault(parts[-1], []).append(".".join(parts))
    return found


@cache
def classes_by_name() -> dict[str, list[tuple[str, str]]]:
    """``Settings`` -> [("followup.config", "Settings")]."""
    found: dict[str, list[tuple[str, str]]] = {}
    for folder in CODE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                if isinstance(node, ast.ClassDef):
                    found.setdefault(node.name, []).append((module, node.name))
    return found


def has_attribute(obj: object, name: str) -> bool:
    if hasattr(obj, name):
        return True
    fields = getattr(obj, "model_fields", None) or getattr(obj, "__dataclass_fields__", None) or {}
    return name in fields or name in getattr(obj, "__annotations__", {})


def resolve(dotted: str) -> bool:
    """``followup.job.run_job``: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not has_attribute(obj, attr):
                return False
            obj = getattr(obj, attr, None)
        return True
    return False


@cache
def string_literals() -> frozenset[str]:
    """Every string constant in the code: audit actions (``study.list``), report fields..."""
    found: set[str] = set()
    for folder in CODE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    found.add(node.value)
    return frozenset(found)


@cache
def registry_columns() -> dict[str, frozenset[str]]:
    """``studies`` -> its columns: the docs name registry columns as ``table.column``."""
    from followup.service.registry import Base

    return {name: frozenset(table.columns.keys()) for name, table in Base.metadata.tables.items()}


def resolve_short(dotted: str) -> bool | None:
    """``evidence.ENDPOINT``, ``Settings.from_env``: a module's or a class's attribute;
    ``studies.patient_id``: a registry column; ``study.list``: a name the code spells as a string
    (an audit action). None when the first part names none of these (a JSON field...)."""
    if dotted in string_literals():
        return True
    head, *rest = dotted.split(".")
    if head in registry_columns() and len(rest) == 1:
        return rest[0] in registry_columns()[head]
    candidates = [*modules_by_basename().get(head, []),
                  *(f"{m}.{c}" for m, c in classes_by_name().get(head, []))]
    if not candidates:
        return None
    return any(resolve(".".join([c, *rest])) for c in candidates)


# --- the command line ----------------------------------------------------------------------------

@cache
def cli_tree():
    import typer.main

    from followup.cli import app

    return typer.main.get_command(app)


def options_of(command) -> set[str]:
    return {o for p in command.params for o in (*p.opts, *getattr(p, "secondary_opts", ())) if o.startswith("-")}


def _option(chain: list, option: str):
    for command in reversed(chain):
        for param in command.params:
            if option in (*param.opts, *getattr(param, "secondary_opts", ())):
                return param
    return None


def check_command(words: list[str], start=None) -> tuple[str | None, object]:
    """Walk ``words`` down the command tree from ``start`` (the root by default); every ``--opt``
    must belong to the command reached or a group above it. (error or None, the command reached)."""
    node = start or cli_tree()
    chain = [node]
    skip_value = False
    for word in words:
        if skip_value and not word.startswith("-"):
            skip_value = False
            continue
        skip_value = False
        if word.startswith("-"):
            option = word.split("=", 1)[0]
            param = _option(chain, option)
            if option == "--help":
                continue
            if param is None:
                return f"no option {option} on `{' '.join(c.name or 'followup' for c in chain)}`", node
            skip_value = "=" not in word and not getattr(param, "is_flag", False) and not getattr(param, "count", False)
        elif hasattr(node, "commands"):
            if word not in node.commands:
                return f"no command `{word}` in `{node.name or 'followup'}`", node
            node = node.commands[word]
            chain.append(node)
        # else: an argument's value (DIR, UID, N...)
    return None, node


def command_words(text: str) -> list[str]:
    """The command's words and options, without placeholders (DIR, N|STUDY_UID, {a,b}),
    brackets and shell comments."""
    text = text.split("  #", 1)[0].split(" # ", 1)[0]
    words = []
    for token in text.split():
        word = token.strip("[]{}()")
        if not word or word in ("|", "...") or (word.isupper() and not word.startswith("-")):
            continue
        words.append(word)
    return words


def _parent_of(command) -> object:
    root = cli_tree()
    for group in root.commands.values():
        if hasattr(group, "commands") and command in group.commands.values():
            return group
    return root


def check_cli_line(text: str) -> tuple[list[str], object]:
    """One line naming ``followup ...``. Alternatives after `` | `` go on from the same command
    (``--since DATE | --study UID``) or its group (``quarantine show N | release N``), or name
    another command (``procedures add FILE | procedures list``)."""
    errors: list[str] = []
    root = cli_tree()
    first_error, first = check_command(command_words(text.split(" | ")[0])[1:])
    if first_error:
        errors.append(first_error)
    for segment in text.split(" | ")[1:]:
        words = command_words(segment)
        if not words:
            continue
        if words[0].startswith("-"):
            start = first
        elif words[0] in root.commands:
            start = root
        else:
            start = first if hasattr(first, "commands") else _parent_of(first)
        error, _ = check_command(words, start)
        if error:
            errors.append(error)
    return errors, first


@cache
def make_targets() -> frozenset[str]:
    text = (ROOT / "Makefile").read_text()
    return frozenset(re.findall(r"^([A-Za-z][\w-]*):", text, flags=re.M))


# --- one name ------------------------------------------------------------------------------------

def check_path(text: str) -> str | None:
    path, _, test = text.partition("::")
    target = ROOT / path.rstrip("/")
    if any(ch in path for ch in "<>*{}$") or not target.exists():
        if any(ch in path for ch in "<>*{}$"):
            return None  # a pattern (reports/<Study>/...), not a path
        return f"no such file or folder: {path}"
    if test:
        source = target.read_text(encoding="utf-8")
        if not re.search(rf"^\s*(async )?def {re.escape(test.split('[')[0])}\b", source, flags=re.M):
            return f"no test {test} in {path}"
    return None


def check_inline(text: str) -> list[str]:
    """Errors for one inline code span (empty when it names nothing checkable, or names it right)."""
    text = text.strip()
    if text.startswith("followup ") or text == "followup":
        return check_cli_line(text)[0]
    if re.fullmatch(r"make [a-z][\w-]*", text):
        target = text.split()[1]
        return [] if target in make_targets() else [f"no make target {target}"]
    if PATH_SPAN.fullmatch(text):
        error = check_path(text)
        return [error] if error else []
    call = re.fullmatch(r"([A-Za-z_][\w.]*)\((.*)\)", text, flags=re.S)
    name = call.group(1) if call else text
    if FILE_NAME.search(name):
        return []  # a file's name (followup.db, report.json), not code
    if re.fullmatch(r"(?:followup|workers)(?:\.[A-Za-z_]\w*)+", name):
        return [] if resolve(name) else [f"{name} does not resolve"]
    if re.fullmatch(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+", name):
        found = resolve_short(name)
        return [f"{name} does not resolve"] if found is False else []
    if call and re.fullmatch(r"[A-Za-z_]\w*", name) and name not in NOT_PYTHON and not hasattr(builtins, name):
        return [] if name in defined_names() else [f"no function or class {name}()"]
    return []


def check_block_line(text: str) -> list[str]:
    """Errors for one line of a code block: command lines, and ``name()`` calls in diagrams."""
    errors: list[str] = []
    stripped = text.strip()
    for prefix in ("followup ", ".venv/bin/followup ", "$(BIN)/followup "):
        if stripped.startswith(prefix):
            errors += check_cli_line("followup " + stripped[len(prefix):])[0]
    if stripped.startswith(("make ", "  make ")):
        target = stripped.split()[1]
        if target not in make_targets():
            errors.append(f"no make target {target}")
    for path in BLOCK_PATH.findall(text):
        error = check_path(path)
        if error:
            errors.append(error)
    for name in re.findall(r"(?<![\w.$])([a-z_][a-z0-9_]*)\(\)", text):
        if name not in defined_names():
            errors.append(f"no function or class {name}()")
    return errors


def problems(path: Path) -> list[str]:
    found: list[str] = []
    markdown = path.read_text(encoding="utf-8")
    reached = None
    for span in spans(markdown):
        if span.block and span.text[:1].isspace() and reached is not None and span.text.strip().startswith("["):
            # a continuation line of a multi-line synopsis: its options belong to the command above
            errors = [e for w in command_words(span.text) if w.startswith("--")
                      for e in [check_command([w], reached)[0]] if e]
        elif span.block:
            errors = check_block_line(span.text)
            if span.text.strip().startswith("followup "):
                reached = check_cli_line(span.text.strip())[1]
        else:
            errors = check_inline(span.text)
        found += [f"{path.relative_to(ROOT)}:{span.line}: {e} (in `{span.text.strip()}`)" for e in errors]
    return found


# --- the tests -----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_name_the_docs_give_the_code_exists(path: Path):
    assert problems(path) == []


@pytest.mark.parametrize(("text", "ok"), [
    ("execute()", True), ("act()", False),
    ("followup.job.run_job", True), ("followup.job.run_jobs", False), ("followup.nowhere.x", False),
    ("evidence.ENDPOINT", True), ("evidence.ENDPOINTS", False), ("Settings.from_env", True),
    ("followup/service/orchestrator.py", True), ("followup/service/orchestra.py", False),
    ("tests/unit/test_docs.py::test_the_name_checks_catch_drift", True),
    ("tests/unit/test_docs.py::test_nothing", False),
    ("followup serve-dicom --tls-cert", True), ("followup serve-dicom --tls-certificate", False),
    ("followup --data-dir DIR status", True), ("followup quarantine list --state", True),
    ("followup quarantine list --nope", False), ("followup frobnicate", False),
    ("make test", True), ("make tests", False),
    ("report.json", True), ("center_lps_mm", True),  # not code: nothing to check
])
def test_the_name_checks_catch_drift(text: str, ok: bool):
    assert (check_inline(text) == []) is ok, check_inline(text)


def test_a_synopsis_line_with_alternatives_is_checked_per_alternative():
    assert check_block_line("followup quarantine show N | release N|STUDY_UID [--by NAME] [--why TEXT]") == []
    assert check_block_line("followup procedures add FILE.json [...] | procedures list [--json]") == []
    assert check_block_line("followup quarantine show N | release N [--nope]") != []
    assert check_block_line("  orchestrator.py: decide() -> act()") == ["no function or class act()"]


def test_the_site_builds_strict_with_the_api_generated_from_the_application(tmp_path):
    """``mkdocs build --strict``: the build fails on any warning (a broken link or anchor, a page the
    nav names that does not exist). The generated API page lists every route of the real app."""
    hooks_spec = importlib.util.spec_from_file_location("mkdocs_hooks", ROOT / "scripts" / "mkdocs_hooks.py")
    assert hooks_spec is not None and hooks_spec.loader is not None
    hooks = importlib.util.module_from_spec(hooks_spec)
    hooks_spec.loader.exec_module(hooks)
    site = tmp_path / "site"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               NO_MKDOCS_2_WARNING="1")
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-4000:]
    api_page = (site / "api" / "index.html").read_text(encoding="utf-8")
    for path in hooks.openapi_spec()["paths"]:
        assert f"{path}</code>" in api_page.replace("&amp;", "&"), path
    assert (site / "openapi.json").is_file()
    settings_page = (site / "service" / "settings" / "index.html").read_text(encoding="utf-8")
    assert "FOLLOWUP_DATA_DIR" in settings_page and "FOLLOWUP_SYNC_STORAGE" in settings_page
    for result in (ROOT / "benchmarks" / "results").glob("*.md"):
        assert (site / "benchmarks" / "results" / result.stem / "index.html").is_file(), result.name
    external = set()
    for page in site.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        external |= set(re.findall(r"""<(?:script|link|img)[^>]+(?:src|href)=["'](https?://[^"']+)""", html))
    assert external == set(), f"the site loads from other hosts: {sorted(external)[:5]}"


def nav_pages(entries) -> Iterator[str]:
    for entry in entries:
        if isinstance(entry, str):
            yield entry
        elif isinstance(entry, dict):
            for value in entry.values():
                yield from (nav_pages(value) if isinstance(value, list) else [value])


def test_every_page_in_docs_is_in_the_nav():
    """A page left out of mkdocs.yml's nav builds (MkDocs only logs it) but no reader finds it."""
    import yaml

    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    listed = set(nav_pages(config["nav"]))
    written = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert written - listed == set(), "add these pages to the nav in mkdocs.yml"
