"""Prompt templates: plain text files, one per domain plus an aggregation template.

A template file has a ``### system`` section and a ``### user`` section. The user section holds
placeholders in braces: ``{history}`` (domain templates) or ``{profiles}`` and ``{n_parts}``
(``aggregate.txt``). Any other ``{name}`` is an error, so a typo never reaches the LLM. Pass
``prompt_dir`` to use your own files; a file missing there falls back to the packaged one.
The result is a list of chat messages, rendered by the backend (chat template or served API).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .history import DOMAINS

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
        raise ValueError(f"{source}: a prompt template needs '### system' and/or '### user' sections")
    sections: dict[str, str] = {}
    for i in range(1, len(parts), 2):
        key = parts[i]
        if key in sections:
            raise ValueError(f"{source}: section '### {key}' appears twice")
        sections[key] = parts[i + 1].strip()
    if not sections.get("user"):
        raise ValueError(f"{source}: the '### user' section is missing or empty")
    used = set(_FIELD.findall(sections["user"])) | set(_FIELD.findall(sections.get("system", "")))
    unknown = used - fields
    if unknown:
        raise ValueError(f"{source}: unknown placeholder(s) {sorted(unknown)}; allowed: {sorted(fields)}")
    missing = fields - used
    if missing:
        raise ValueError(f"{source}: the user section must contain {sorted('{' + m + '}' for m in missing)}")
    return Template(name, sections.get("system", ""), sections["user"], source)


def _read(name: str, prompt_dir: str | Path | None) -> tuple[str, str]:
    if prompt_dir is not None:
        path = Path(prompt_dir) / f"{name}.txt"
        if path.is_file():
            return path.read_text(encoding="utf-8"), str(path)
        if not Path(prompt_dir).is_dir():
            raise FileNotFoundError(f"{prompt_dir}: prompt_dir is not a folder")
    res = resources.files("seqdistill.profiles").joinpath("prompts", f"{name}.txt")
    return res.read_text(encoding="utf-8"), f"<packaged>/prompts/{name}.txt"


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


def load_prompts(domain: str, prompt_dir: str | Path | None = None) -> PromptSet:
    """Load ``<domain>.txt`` and ``aggregate.txt`` from ``prompt_dir`` or the packaged defaults."""
    if domain not in DOMAINS:
        raise ValueError(f"domain {domain!r} is not one of {DOMAINS}")
    text, src = _read(domain, prompt_dir)
    profile = parse_template(text, domain, src, {"history"})
    text, src = _read("aggregate", prompt_dir)
    aggregate = parse_template(text, "aggregate", src, {"profiles", "n_parts"})
    return PromptSet(domain, profile, aggregate)
