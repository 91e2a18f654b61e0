"""Campaign templates: simple ``{name}`` fields only, checked before any row is read."""

from __future__ import annotations

import pytest

from producer.campaign_templates import parse_template
from producer.errors import InvalidField


def test_template_fields_are_found_once_in_order() -> None:
    template = parse_template("Hi {name}, {name}! Code {code} {{literal}}", max_parts=10)
    assert template.fields == ("name", "code")
    assert template.render({"name": "Ann", "code": "42"}) == "Hi Ann, Ann! Code 42 {literal}"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Hi {user.name}", "not a simple name"),
        ("Hi {names[0]}", "not a simple name"),
        ("Hi {}", "positional field"),
        ("Hi {0}", "positional field"),
        ("Hi {name!r}", "no format or !conversion"),
        ("Hi {name:>10}", "no format or !conversion"),
        ("Hi {name", "not a valid template"),
        ("Hi }", "not a valid template"),
        ("", "must not be empty"),
        ("a" * 2000 + "{name}", "too long"),
    ],
)
def test_templates_allow_simple_names_only(text: str, reason: str) -> None:
    with pytest.raises(InvalidField) as exc:
        parse_template(text, max_parts=10)
    assert exc.value.field == "text"
    assert reason in exc.value.reason
