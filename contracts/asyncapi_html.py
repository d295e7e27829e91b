"""The AsyncAPI document as one self-contained HTML page: no script, no stylesheet or font from elsewhere.

`render_html` is pure; `asyncapi_page` renders the current contract once per process, so serving it from
every service (at `/asyncapi`) and from `dealflow docs` costs one generation.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from html import escape
from typing import Any

from contracts.asyncapi import Document, document

SCHEMA_REF = "#/components/schemas/"
_CONSTRAINTS = (
    "const",
    "enum",
    "pattern",
    "format",
    "minLength",
    "maxLength",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minItems",
    "maxItems",
    "default",
)

STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem;
       color: #1d2430; }
h1, h2, h3 { line-height: 1.2; } h2 { border-top: 2px solid #d5dbe5; padding-top: 1rem; margin-top: 2.5rem; }
h3 { margin-top: 1.5rem; } code { background: #f1f4f8; padding: 0 .25em; border-radius: 3px; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; font-size: 14px; }
th, td { text-align: left; vertical-align: top; border-bottom: 1px solid #e3e8ef; padding: .3rem .5rem; }
th { background: #f6f8fb; } .muted { color: #5b6676; } .tag { display: inline-block; padding: 0 .4em;
       border-radius: 3px; background: #e8eef8; margin-right: .3em; }
.send { background: #e3f4e8; } .receive { background: #fbeedd; } nav ul { columns: 2; }
"""


def render_html(asyncapi: Document) -> str:
    """The page: servers, then every channel with its address, senders, receivers and messages (key,
    headers, payload), then every payload schema."""
    info = asyncapi["info"]
    parties = _parties_by_message(asyncapi)
    channels = asyncapi["channels"]
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(info['title'])} AsyncAPI {escape(info['version'])}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{escape(info['title'])} <span class='muted'>{escape(info['version'])}</span></h1>",
        f"<p class='muted'>AsyncAPI {escape(asyncapi['asyncapi'])}</p>",
        _text(info.get("description", "")),
        "<h2 id='servers'>Servers</h2>",
        _servers(asyncapi),
        "<h2 id='channels'>Channels</h2><nav><ul>",
        *(
            f"<li><a href='#channel-{escape(cid)}'><code>{escape(channel['address'])}</code></a></li>"
            for cid, channel in channels.items()
        ),
        "</ul></nav>",
        *(_channel(asyncapi, cid, channel, parties) for cid, channel in channels.items()),
        "<h2 id='schemas'>Schemas</h2>",
        *(_schema_section(name, schema) for name, schema in asyncapi["components"]["schemas"].items()),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


@functools.cache
def asyncapi_page() -> str:
    """The HTML of the current contract, rendered once per process."""
    return render_html(document())


def _text(markdown: str) -> str:
    """Paragraphs of the little Markdown the descriptions use."""
    return "\n".join(f"<p>{_inline(paragraph)}</p>" for paragraph in markdown.split("\n\n") if paragraph)


def _inline(markdown: str) -> str:
    """`code`, [links](https://...) and *emphasis*; everything else escaped."""
    html = escape(" ".join(markdown.split()))
    html = re.sub(r"`([^`]+)`", r"<code>\1</code>", html)
    html = re.sub(r"\[([^\]]+)\]\((https?://[^)\s]+)\)", r"<a href='\2'>\1</a>", html)
    return re.sub(r"\*([^*\s][^*]*)\*", r"<em>\1</em>", html)


def _resolve(asyncapi: Document, ref: str) -> Any:
    node: Any = asyncapi
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _servers(asyncapi: Document) -> str:
    schemes = asyncapi["components"].get("securitySchemes", {})
    rows = []
    for name, server in asyncapi["servers"].items():
        security = [
            schemes.get(item["$ref"].rsplit("/", 1)[1], {}).get("description", "")
            for item in server.get("security", [])
        ]
        rows.append(
            f"<tr><td>{escape(name)}</td><td><code>{escape(server['host'])}</code></td>"
            f"<td>{escape(server['protocol'])}</td><td>{_text(server.get('description', ''))}"
            f"{''.join(_text(text) for text in security)}</td></tr>"
        )
    return (
        "<table><tr><th>server</th><th>host</th><th>protocol</th><th></th></tr>" + "".join(rows) + "</table>"
    )


def _parties_by_message(asyncapi: Document) -> dict[str, dict[str, list[str]]]:
    """Message reference (`#/channels/<channel>/messages/<id>`) -> action -> the parties doing it."""
    result: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for operation in asyncapi["operations"].values():
        names = [tag["$ref"].rsplit("/", 1)[1] if "$ref" in tag else tag["name"] for tag in operation["tags"]]
        for message in operation["messages"]:
            result[message["$ref"]][operation["action"]].extend(names)
    return result


def _channel(
    asyncapi: Document, cid: str, channel: Document, parties: dict[str, dict[str, list[str]]]
) -> str:
    namespace = asyncapi["components"]["parameters"]["namespace"]["default"]
    example = channel["address"].replace("{namespace}", namespace)
    parts = [
        f"<h2 id='channel-{escape(cid)}'><code>{escape(channel['address'])}</code></h2>",
        f"<p class='muted'>Kafka topic, e.g. <code>{escape(example)}</code></p>",
        _text(channel.get("description", "")),
    ]
    for mid, reference in channel["messages"].items():
        message = _resolve(asyncapi, reference["$ref"])
        who = parties.get(f"#/channels/{cid}/messages/{mid}", {})
        parts += [
            f"<h3 id='message-{escape(cid)}-{escape(mid)}'>{escape(message.get('title', mid))} "
            f"<span class='muted'><code>{escape(message.get('name', mid))}</code></span></h3>",
            _text(message.get("summary", "")),
            "<p>"
            + "".join(f"<span class='tag send'>sent by {escape(name)}</span>" for name in who.get("send", []))
            + "".join(
                f"<span class='tag receive'>received by {escape(name)}</span>"
                for name in who.get("receive", [])
            )
            + "</p>",
            f"<p>Content type <code>{escape(message.get('contentType', asyncapi['defaultContentType']))}"
            "</code></p>",
            "<p><strong>Key</strong>: " + _key(message) + "</p>",
            "<p><strong>Headers</strong></p>",
            _properties_table(_flatten(asyncapi, message.get("headers", {}))),
            "<p><strong>Payload</strong>: " + _type(message.get("payload", {})) + "</p>",
            _properties_table(_flatten(asyncapi, message.get("payload", {}))),
        ]
    return "\n".join(parts)


def _key(message: Document) -> str:
    key = message.get("bindings", {}).get("kafka", {}).get("key", {})
    return _inline(key.get("description", "")) + _constraints(key)


def _flatten(asyncapi: Document, schema: Document) -> Document:
    """An object schema with its `allOf` and `$ref` parts merged, the later parts winning."""
    if "$ref" in schema:
        return _flatten(asyncapi, _resolve(asyncapi, schema["$ref"]))
    merged: Document = {"properties": {}, "required": []}
    for part in schema.get("allOf", []):
        flat = _flatten(asyncapi, part)
        merged["required"] += flat["required"]
        for name, value in flat["properties"].items():
            merged["properties"][name] = {**merged["properties"].get(name, {}), **value}
    for name, value in schema.get("properties", {}).items():
        merged["properties"][name] = {**merged["properties"].get(name, {}), **value}
    merged["required"] += schema.get("required", [])
    for extra in ("patternProperties", "description"):
        if extra in schema:
            merged[extra] = schema[extra]
    return merged


def _properties_table(schema: Document) -> str:
    required = set(schema.get("required", []))
    rows = [
        f"<tr><td><code>{escape(name)}</code></td><td>{'yes' if name in required else ''}</td>"
        f"<td>{_type(field)}{_constraints(field)}</td><td>{_inline(field.get('description', ''))}</td></tr>"
        for name, field in schema.get("properties", {}).items()
    ]
    rows += [
        f"<tr><td><code>{escape(pattern)}…</code></td><td></td><td>{_type(field)}{_constraints(field)}</td>"
        f"<td>{_inline(field.get('description', ''))}</td></tr>"
        for pattern, field in schema.get("patternProperties", {}).items()
    ]
    if not rows:
        return ""
    head = "<table><tr><th>name</th><th>required</th><th>type</th><th>description</th></tr>"
    return head + "".join(rows) + "</table>"


def _type(schema: Document) -> str:
    if "$ref" in schema:
        name = schema["$ref"].removeprefix(SCHEMA_REF)
        return f"<a href='#schema-{escape(name)}'>{escape(name)}</a>"
    options: list[Document] = schema.get("anyOf") or schema.get("oneOf") or []
    if options:
        return " | ".join(_type(option) for option in options)
    kind = schema.get("type")
    if kind == "array":
        return "array of " + _type(schema.get("items", {}))
    if kind == "object" and "additionalProperties" in schema and "properties" not in schema:
        values = schema["additionalProperties"]
        return "map of " + (_type(values) if isinstance(values, dict) else "anything")
    if kind is None:
        return "any"
    return escape(kind if isinstance(kind, str) else " | ".join(kind))


def _constraints(schema: Document) -> str:
    shown = [f"{name} <code>{escape(str(schema[name]))}</code>" for name in _CONSTRAINTS if name in schema]
    return f"<br><span class='muted'>{', '.join(shown)}</span>" if shown else ""


def _schema_section(name: str, schema: Document) -> str:
    parts = [f"<h3 id='schema-{escape(name)}'>{escape(name)}</h3>", _text(schema.get("description", ""))]
    if "properties" in schema or "patternProperties" in schema:
        parts.append(_properties_table(schema))
    else:
        parts.append(f"<p>{_type(schema)}{_constraints(schema)}</p>")
    return "\n".join(parts)
