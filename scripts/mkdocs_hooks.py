"""MkDocs hooks (mkdocs.yml ``hooks:``): pages made from the code at build time, so they cannot drift.

* ``api.md`` and ``openapi.json``: the HTTP API as FastAPI describes it. The spec comes from the
  real application (``followup.api.app.create_app`` on a throw-away data directory), the page is
  rendered from it here: no network, no CDN, no JavaScript viewer.
* ``service/settings.md``: the table of environment variables, from ``followup.config``'s
  docstring (the module that reads them).
* ``benchmarks/results/<name>.md``: every table the benchmarks wrote (``benchmarks/results/``),
  as pages of the site, each linked at the end of ``benchmarks/index.md``.

``python scripts/mkdocs_hooks.py OUT.json`` writes the spec alone."""

from __future__ import annotations

import json
import re
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def openapi_spec() -> dict[str, Any]:
    """FastAPI's spec of the real application, built on an empty registry in a temporary folder."""
    from followup.api.app import create_app
    from followup.config import Settings

    with tempfile.TemporaryDirectory(prefix="followup-openapi-") as tmp:
        settings = Settings(data_dir=Path(tmp), api_token=secrets.token_urlsafe(32),
                            patient_ref_key=secrets.token_hex(32))
        return create_app(settings).openapi()


def _text(value: str | None) -> str:
    """A docstring as Markdown: reST's double backticks become code spans."""
    return re.sub(r"``([^`]+)``", r"`\1`", (value or "").strip())


def _cell(value: str | None) -> str:
    return _text(value).replace("\n", " ").replace("|", "\\|")


def _type(schema: dict[str, Any]) -> str:
    """A schema in a few words: a link for a named model, the type otherwise."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return " or ".join(_type(s) for s in schema[key])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    return f"{kind} ({schema['format']})" if "format" in schema else str(kind)


def _operation(method: str, path: str, op: dict[str, Any]) -> list[str]:
    lines = [f"### `{method.upper()} {path}`", "", f"**{op.get('summary', '')}**", ""]
    if op.get("description"):
        lines += [_text(op["description"]), ""]
    lines += ["Open: no token needed." if "security" not in op else "Needs `Authorization: Bearer TOKEN`.", ""]
    params = op.get("parameters", [])
    if params:
        lines += ["| parameter | in | required | type | description |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| `{p['name']}` | {p['in']} | {'yes' if p.get('required') else 'no'} | "
                  f"{_type(p.get('schema', {}))} | {_cell(p.get('description'))} |" for p in params]
        lines.append("")
    body = op.get("requestBody", {}).get("content", {})
    for media, content in body.items():
        lines += [f"Request body ({media}): {_type(content.get('schema', {}))}", ""]
    lines += ["| status | meaning | body |", "| --- | --- | --- |"]
    for status, response in op.get("responses", {}).items():
        schemas = [_type(c["schema"]) for c in response.get("content", {}).values() if c.get("schema")]
        lines.append(f"| {status} | {_cell(response.get('description'))} | {', '.join(schemas) or '—'} |")
    return [*lines, ""]


def _schema(name: str, schema: dict[str, Any]) -> list[str]:
    lines = [f"### {name}", ""]
    if schema.get("description"):
        lines += [_text(schema["description"]), ""]
    if "enum" in schema:
        return [*lines, "One of " + ", ".join(f"`{v}`" for v in schema["enum"]) + ".", ""]
    required = set(schema.get("required", []))
    properties = schema.get("properties", {})
    if properties:
        lines += ["| field | type | required | description |", "| --- | --- | --- | --- |"]
        lines += [f"| `{field}` | {_type(prop)} | {'yes' if field in required else 'no'} | "
                  f"{_cell(prop.get('description'))} |" for field, prop in properties.items()]
        lines.append("")
    return lines


def openapi_markdown(spec: dict[str, Any]) -> str:
    """The API reference page: operations grouped by their tag, then the models."""
    info = spec["info"]
    lines = ["# The HTTP API", "",
             f"Generated at build time from the application's OpenAPI {spec['openapi']} spec "
             f"(`{info['title']}` {info['version']}): {_text(info.get('description'))} "
             "The spec itself: [openapi.json](openapi.json); a running service serves it at "
             "`GET /openapi.json`, behind the token. The web page's own routes (`/`, `/favicon.svg`, "
             "`/favicon.ico`) and `/openapi.json` are not in the spec.", ""]
    for name, scheme in spec.get("components", {}).get("securitySchemes", {}).items():
        lines += [f"Authentication: `{name}` ({scheme.get('scheme', scheme['type'])}): "
                  f"{_text(scheme.get('description'))}.", ""]
    by_tag: dict[str, list[tuple[str, str, dict]]] = {}
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            if method in HTTP_METHODS:
                by_tag.setdefault((op.get("tags") or ["other"])[0], []).append((method, path, op))
    for tag, operations in by_tag.items():
        lines += [f"## {tag}", ""]
        for method, path, op in operations:
            lines += _operation(method, path, op)
    lines += ["## Models", ""]
    for name, schema in spec.get("components", {}).get("schemas", {}).items():
        lines += _schema(name, schema)
    return "\n".join(lines)


def settings_markdown() -> str:
    """The environment variables, from the docstring of the one module that reads them."""
    import followup.config

    doc = followup.config.__doc__ or ""
    return "\n".join([
        "# Settings", "",
        "Generated at build time from the docstring of `followup/config.py`, the only module that reads "
        "`FOLLOWUP_*` variables (`Settings.from_env`). The command line reads them once and passes the "
        "`Settings` on; an option of `followup serve-dicom`, `followup worker` or `followup serve-api` "
        "overrides its variable (see [Running the service](index.md)).", "",
        _text(doc), ""])


def on_files(files, config):
    from mkdocs.structure.files import File

    spec = openapi_spec()
    files.append(File.generated(config, "api.md", content=openapi_markdown(spec)))
    files.append(File.generated(config, "openapi.json", content=json.dumps(spec, indent=1)))
    files.append(File.generated(config, "service/settings.md", content=settings_markdown()))
    for result in sorted(RESULTS.glob("*.md")):
        files.append(File.generated(config, f"benchmarks/results/{result.name}",
                                    content=result.read_text(encoding="utf-8")))
    for image in sorted(RESULTS.glob("*.png")):  # what the tables show (a screenshot of a dashboard)
        files.append(File.generated(config, f"benchmarks/results/{image.name}", abs_src_path=str(image)))
    return files


def on_page_markdown(markdown, page, config, files):
    """The benchmarks page ends with a link to every result table, so a new one is never missed."""
    if page.file.src_uri != "benchmarks/index.md":
        return markdown
    links = [f"* [{result.stem}](results/{result.name}) (`benchmarks/results/{result.name}`)"
             for result in sorted(RESULTS.glob("*.md"))]
    return markdown.rstrip() + "\n\n## Every result table\n\n" + "\n".join(links) + "\n"


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(json.dumps(openapi_spec(), indent=1))
