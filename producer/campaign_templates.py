"""Campaign templates: a text with ``{name}`` fields filled from each recipient row.

Checked once, before a campaign reads its first row (:func:`parse_template`);
rendered per row by campaign ingestion (:mod:`producer.campaign_ingestion`).
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from models.sms_text import TextError, TextTooLong, analyze
from producer.errors import InvalidField
from producer.validation import storage_problem, text_reason


@dataclass(frozen=True, slots=True)
class Template:
    """A campaign text with ``{name}`` fields filled from each recipient row."""

    text: str
    fields: tuple[str, ...]

    def render(self, values: Mapping[str, Any]) -> str:
        """The text for one row; KeyError(name) when a field is missing or None."""
        for name in self.fields:
            if values.get(name) is None:
                raise KeyError(name)
        return self.text.format_map(values)


def parse_template(text: str, *, max_parts: int) -> Template:
    """Check a template up front; only simple ``{name}`` fields are allowed.

    Attribute and index access (``{a.b}``, ``{a[0]}``), positional fields
    (``{}``, ``{0}``), conversions and format specs are refused: a template
    comes from a user, and ``str.format`` would otherwise walk attributes of
    the row objects. ``{{`` and ``}}`` are literal braces. A text too long
    even with every field empty is refused here instead of on every row.
    """
    if not isinstance(text, str):
        raise InvalidField("text", f"must be a string, not {type(text).__name__}")
    problem = storage_problem(text)
    if problem is not None:
        raise InvalidField("text", problem)
    fields: dict[str, None] = {}
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise InvalidField(
            "text", f"not a valid template: {exc} (write {{{{ and }}}} for a literal brace)"
        ) from None
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name or name.isdigit():
            raise InvalidField("text", "positional field {} not allowed: name it, e.g. {name}")
        if not name.isidentifier():
            raise InvalidField(
                "text",
                f"template field {{{name}}} is not a simple name "
                "(attribute and index access are not allowed)",
            )
        if spec or conversion:
            raise InvalidField(
                "text",
                f"template field {{{name}}}: only {{{name}}} is allowed, no format or !conversion",
            )
        fields[name] = None
    template = Template(text, tuple(fields))
    skeleton = template.text.format_map(dict.fromkeys(template.fields, ""))
    try:
        analyze(skeleton, max_parts=max_parts)
    except TextTooLong as exc:
        raise InvalidField("text", text_reason(exc)) from exc
    except TextError:
        if not template.fields:  # empty text, nothing to fill in
            raise InvalidField("text", "must not be empty") from None
    return template
