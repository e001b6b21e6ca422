"""Prompt templates: plain text files, one per domain plus an aggregation template.

A template file has a ``### system`` section and a ``### user`` section. The user section holds
placeholders in braces: ``{history}`` (domain templates) or ``{profiles}`` and ``{n_parts}``
(``aggregate.txt``). Any other ``{name}`` is an error, so a typo never reaches the LLM. Pass
``prompt_dir`` to use your own files: the domain's template must be there (a misnamed file would
otherwise be replaced by the packaged prompt without a word); ``aggregate.txt`` falls back to the
packaged one when absent. ``style="compact"`` selects the short packaged templates
(``compact_<domain>.txt``, ``compact_aggregate.txt``: four labelled output lines) written for small
models; files in ``prompt_dir`` are used as they are whatever the style.
The result is a list of chat messages, rendered by the backend (chat template or served API).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from seqdistill.errors import ConfigError

from .history import DOMAINS, STYLES

_SECTION = re.compile(r"^###\s*(system|user)\s*$", re.MULTILINE)
_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Template:
    """One parsed template file."""

    name: str
    system: str
    user: str
    source: str

    def render(self, **values: object) -> Messages:
        """Fill the user section and return [system, user] chat messages."""

        def fill(m: re.Match[str]) -> str:
            return str(values[m.group(1)])

        text = _FIELD.sub(fill, self.user)
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        return msgs + [{"role": "user", "content": text}]


def parse_template(text: str, name: str, source: str, fields: set[str]) -> Template:
    """Parse a template file's text; errors name the file."""
    parts = _SECTION.split(text)
    if len(parts) < 3:
        raise ConfigError(f"{source}: a prompt template needs '### system' and/or '### user' sections")
    sections: dict[str, str] = {}
    for i in range(1, len(parts), 2):
        key = parts[i]
        if key in sections:
            raise ConfigError(f"{source}: section '### {key}' appears twice")
        sections[key] = parts[i + 1].strip()
    if not sections.get("user"):
        raise ConfigError(f"{source}: the '### user' section is missing or empty")
    used = set(_FIELD.findall(sections["user"])) | set(_FIELD.findall(sections.get("system", "")))
    unknown = used - fields
    if unknown:
        raise ConfigError(f"{source}: unknown placeholder(s) {sorted(unknown)}; allowed: {sorted(fields)}")
    missing = fields - used
    if missing:
        raise ConfigError(f"{source}: the user section must contain {sorted('{' + m + '}' for m in missing)}")
    return Template(name, sections.get("system", ""), sections["user"], source)


def _read(name: str, prompt_dir: str | Path | None, required: bool, style: str = "full") -> tuple[str, str]:
    """Text and source of ``<name>.txt``: from ``prompt_dir`` (an error when ``required`` and
    absent there), else the packaged file (``compact_<name>.txt`` for the compact style)."""
    if prompt_dir is not None:
        folder = Path(prompt_dir)
        if not folder.is_dir():
            raise ConfigError(f"{folder}: prompt_dir is not a folder")
        path = folder / f"{name}.txt"
        if path.is_file():
            try:
                return path.read_text(encoding="utf-8"), str(path)
            except UnicodeDecodeError as e:
                raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
            except OSError as e:
                raise ConfigError(f"{path}: cannot read ({type(e).__name__}: {e.strerror})") from None
        if required:
            found = sorted(p.name for p in folder.glob("*.txt"))
            raise ConfigError(
                f"{path}: prompt_dir has no {name}.txt (found {found}); name the "
                f"{name!r} template {name}.txt or leave prompt_dir unset"
            )
    packaged = name if style == "full" else f"{style}_{name}"
    res = resources.files("seqdistill.profiles").joinpath("prompts", f"{packaged}.txt")
    return res.read_text(encoding="utf-8"), f"<packaged>/prompts/{packaged}.txt"


@dataclass(frozen=True)
class PromptSet:
    """The domain template, the aggregation template and their hash."""

    domain: str
    profile: Template
    aggregate: Template

    @property
    def hash(self) -> str:
        """First 16 hex digits of sha256 over both templates' sections."""
        h = hashlib.sha256()
        for t in (self.profile, self.aggregate):
            for s in (t.system, t.user):
                h.update(s.encode("utf-8"))
                h.update(b"\0")
        return h.hexdigest()[:16]

    def profile_messages(self, history: str) -> Messages:
        return self.profile.render(history=history)

    def aggregate_messages(self, profiles: list[str]) -> Messages:
        body = "\n\n".join(f"Part {i + 1}:\n{p.strip()}" for i, p in enumerate(profiles))
        return self.aggregate.render(profiles=body, n_parts=len(profiles))


def load_prompts(domain: str, prompt_dir: str | Path | None = None, style: str = "full") -> PromptSet:
    """Load ``<domain>.txt`` and ``aggregate.txt`` from ``prompt_dir`` or the packaged defaults
    of ``style`` ("full" or "compact")."""
    if domain not in DOMAINS:
        raise ConfigError(f"domain {domain!r} is not one of {DOMAINS}")
    if style not in STYLES:
        raise ConfigError(f"prompt style {style!r} is not one of {STYLES}")
    text, src = _read(domain, prompt_dir, required=True, style=style)
    profile = parse_template(text, domain, src, {"history"})
    text, src = _read("aggregate", prompt_dir, required=False, style=style)
    aggregate = parse_template(text, "aggregate", src, {"profiles", "n_parts"})
    return PromptSet(domain, profile, aggregate)
