"""MkDocs hook: the settings reference, generated from ``Voice2FASettings``.

``docs/reference/settings.md`` holds the marker ``<!-- settings -->``; this hook replaces it with
one table per group of settings (the comment lines of the class body), each setting with its
environment variable, type, default, limits and description (its docstring in the class, else
``DESCRIPTIONS`` below). The limits are written here, in ``LIMITS``, and ``tests/test_docs.py``
probes each one against the class (a value at each end is accepted, one past it refused).

The class is imported from the top-level package only: private modules may move.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import textwrap
from dataclasses import dataclass
from typing import Any

MARKER = "<!-- settings -->"


@dataclass(frozen=True)
class Limit:
    text: str
    low: float | None = None  # the lowest value accepted
    high: float | None = None  # the highest value accepted
    step: float = 1  # how far past an end the first refused value is
    refused: tuple[Any, ...] = ()  # values the class refuses (checked by the test)


LIMITS: dict[str, Limit] = {
    "secret_key": Limit(
        "required, and each key at least 16 characters, unless every URL in play is loopback",
        refused=("too-short",),
    ),
    "signalwire_space": Limit(
        "a host name or an http(s) URL; `http://` only for a loopback host",
        refused=("http://signalwire.example",),
    ),
    "public_url": Limit(
        "an origin only (no path, query or fragment); `https://`, or `http://` for a loopback host",
        refused=("https://app.example/sub", "http://app.example"),
    ),
    "prefix": Limit("starts with `/`, does not end with `/`", refused=("voice2fa", "/voice2fa/")),
    "cookie_path": Limit("a path such as `/app`", refused=("app",)),
    "cookie_name_prefix": Limit("letters, digits, `_`, `-` or `.`", refused=("", "v2fa;")),
    "remember_days": Limit("0 (off) or more", low=0),
    "protected_no_store": Limit("`html`, `always` or `never`", refused=("sometimes",)),
    "logout_url": Limit("a path on this site", refused=("https://elsewhere.example/logout",)),
    "help_url": Limit("a path on this site or an `https://` URL", refused=("http://help.example",)),
    "trusted_proxies": Limit("addresses or networks", refused=(("proxy.internal",),)),
    "code_digits": Limit("6 to 10", low=6, high=10),
    "code_ttl": Limit("30 to 600 seconds", low=30, high=600),
    "max_attempts": Limit("1 to 10", low=1, high=10),
    "lockout_failures": Limit("1 to 99", low=1, high=99),
    "resend_cooldown": Limit("0 or more", low=0),
    "max_calls_per_challenge": Limit("at least 1", low=1),
    "calls_per_phone_per_hour": Limit("at least 1", low=1),
    "calls_per_user_per_hour": Limit("at least 1", low=1),
    "calls_per_client_per_hour": Limit("at least 1", low=1),
    "calls_per_hour": Limit("at least 1", low=1),
    "known_phone_days": Limit("at least 1", low=1),
    "phoneless": Limit("`enrol`, `refuse` or `allow`; `enrol` needs `on_phone_confirmed`", refused=("ask",)),
    "enrol_fresh_within": Limit("30 to 86400 seconds", low=30, high=86400),
    "enrol_calls_per_user_per_hour": Limit("at least 1", low=1),
    "enrol_calls_per_client_per_hour": Limit("at least 1", low=1),
    "enrol_calls_per_phone_per_hour": Limit("at least 1", low=1),
    "shared_phone_accounts": Limit("at least 1", low=1),
    "calls_per_second": Limit("0 (no pacing) to 1000", low=0, high=1000),
    "reported_pause": Limit("0 (no pause) to 86400 seconds", low=0, high=86400),
    "from_numbers": Limit("ISO region codes and E.164 numbers", refused=({"France": "+33123456789"},)),
    "body_timeout": Limit("more than 0, at most 120 seconds", high=120, refused=(0, 0.0)),
}

# For the settings whose docstring the class does not have (a docstring there wins: the test
# fails when one of these is no longer needed).
DESCRIPTIONS: dict[str, str] = {
    "signalwire_project": "The Project ID of your SignalWire Space.",
    "signalwire_token": "An API token of the Space (HTTP Basic `project:token`).",
    "redis_url": "Use `RedisStore` at this URL: `redis://`, `rediss://` (TLS), `unix://`, "
    "`redis+sentinel://`, `redis+cluster://` (see [Stores](../operations/stores.md)).",
    "prefix": "Where the middleware's own pages and webhooks are, after the app's root path.",
    "verified_max_age": "Seconds a verification lasts (the verified cookie's lifetime).",
    "code_digits": "Digits in a code.",
    "code_ttl": "Seconds a code (and its challenge) lives.",
    "max_attempts": "Wrong codes allowed per challenge.",
    "lockout_window": "The window, in seconds, in which `lockout_failures` are counted.",
    "resend_cooldown": "Seconds before another call of the same challenge can be asked for.",
    "max_calls_per_challenge": "Calls one challenge may place (the first and the resends).",
    "calls_per_phone_per_hour": "Calls to one phone number per hour.",
    "calls_per_user_per_hour": "Verification calls for one user per hour.",
    "calls_per_client_per_hour": "Calls asked for from one client address per hour (an IPv6 client's /64).",
    "call_timeout": "Seconds a Create Call request to SignalWire may take, retries included.",
    "enrol_calls_per_user_per_hour": "Phone-page calls for one user per hour.",
    "enrol_calls_per_client_per_hour": "Phone-page calls from one client address per hour.",
    "enrol_calls_per_phone_per_hour": "Phone-page calls to one number per hour.",
    "voice": "The `<Say>` voice, such as `woman`, or a `Polly.` or `gcloud.` voice.",
    "app_name": "Your app's name, said at the start of each call.",
    "default_language": "The language when the request's `Accept-Language` matches none.",
    "store_timeout": "Seconds a store operation may take before the request fails closed (503).",
    "max_body_size": "Bytes a form or JSON body sent to the middleware's endpoints may have (else 413).",
    "memory_max_challenges": "Pending challenges `MemoryStore` keeps; when full, new ones are refused (503).",
}


def settings_class() -> type:
    from voice2fa_middleware import Voice2FASettings  # the public name, wherever it is defined

    return Voice2FASettings


def env_names(cls: type) -> dict[str, str]:
    """Each setting and its environment variable, as the class's own module defines them."""
    module = inspect.getmodule(cls)
    names = getattr(module, "env_names", None)
    if names is None:  # pragma: no cover - the module was reorganised
        raise RuntimeError(f"{module}: no env_names(); update docs/hooks.py")
    return dict(names())


def _class_notes(cls: type) -> dict[str, tuple[str, str]]:
    """field -> (group, docstring): the group is the last comment line above the field."""
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    [node] = ast.parse(source).body
    assert isinstance(node, ast.ClassDef)
    notes: dict[str, tuple[str, str]] = {}
    group, previous_end = "", node.body[0].end_lineno or 0
    body = node.body
    for n, item in enumerate(body):
        if not isinstance(item, ast.AnnAssign) or not isinstance(item.target, ast.Name):
            previous_end = item.end_lineno or previous_end
            continue
        for line in lines[previous_end : item.lineno - 1]:
            comment = re.match(r"\s*#\s*(.+)", line)
            if comment:
                group = _unref(comment[1])
        doc = ""
        after = body[n + 1] if n + 1 < len(body) else None
        if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
            doc = " ".join(inspect.cleandoc(after.value.value).split())
            previous_end = after.end_lineno or item.end_lineno or 0
        else:
            previous_end = item.end_lineno or 0
        notes[item.target.id] = (group, doc)
    return notes


def _unref(text: str) -> str:
    """Without the references to the security model's requirements, ``(S1-S4)``."""
    return re.sub(r"\s*\(S\d[\w, -]*\)", "", text).strip()


def _rst_to_md(text: str) -> str:
    return _unref(text).replace("``", "`").replace(":class:", "").replace(":meth:", "")


def _default(value: Any) -> str:
    if value is None:
        return "`None`"
    if isinstance(value, str):
        return f'`"{value}"`' if value else '`""`'
    if isinstance(value, tuple) and not value:
        return "`()`"
    if isinstance(value, dict) and not value:
        return "`{}`"
    return f"`{value!r}`"


def _env_form(kind: str) -> str:
    base = kind.replace(" | None", "")
    if base == "bool":
        return "`true` / `false`"
    if "Sequence[str]" in base:
        return "comma-separated"
    if "Mapping[str, str]" in base:
        return "comma-separated `KEY=value` pairs"
    if base in ("int", "float"):
        return "a number"
    return "text"


@dataclass(frozen=True)
class Row:
    group: str
    name: str
    env: str
    type: str
    env_form: str
    default: str
    limits: str
    description: str


def rows() -> list[Row]:
    cls = settings_class()
    env = env_names(cls)
    notes = _class_notes(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        group, doc = notes.get(f.name, ("", ""))
        description = _rst_to_md(doc) or DESCRIPTIONS.get(f.name, "")
        limit = LIMITS.get(f.name)
        out.append(
            Row(
                group=group,
                name=f.name,
                env=env[f.name],
                type=str(f.type),
                env_form=_env_form(str(f.type)),
                default=_default(f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default),
                limits=limit.text if limit else "",
                description=description,
            )
        )
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def settings_markdown() -> str:
    parts: list[str] = []
    group = None
    for row in rows():
        if row.group != group:
            group = row.group
            parts += ["", f"### {group}", "", "| setting | environment | type | default | limits | meaning |"]
            parts.append("| --- | --- | --- | --- | --- | --- |")
        cells = [
            f"`{row.name}`",
            f"`{row.env}` ({row.env_form})",
            f"`{_cell(row.type)}`",
            _cell(row.default),
            _cell(row.limits) or "",
            _cell(row.description),
        ]
        parts.append("| " + " | ".join(cells) + " |")
    return "\n".join(parts).strip() + "\n"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, settings_markdown())
    return markdown
