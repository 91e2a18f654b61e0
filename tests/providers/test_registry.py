"""The registry: each vendor one line, read by the providers file and the adapters."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from providers.accounts import VENDOR_NAMES, ProviderAccount
from providers.brand.account import BrandAccount
from providers.brand.adapter import BrandAdapter
from providers.panelsms.account import PanelSmsAccount
from providers.panelsms.adapter import PanelSmsAdapter
from providers.registry import VENDORS, make_adapter, report_status_field

ROOT = Path(__file__).resolve().parents[2]
ACCOUNTS = {
    "panelsms": {"adapter": "panelsms", "url": "http://p.test", "user": "u", "api_key": "k"},
    "brand": {"adapter": "brand", "url": "http://b.test", "key": "k", "brand_id": "B"},
}


def test_every_vendor_is_listed_once() -> None:
    assert VENDOR_NAMES == ("panelsms", "brand")
    assert {name: v.account for name, v in VENDORS.items()} == {
        "panelsms": PanelSmsAccount,
        "brand": BrandAccount,
    }


@pytest.mark.parametrize(
    ("name", "account", "adapter"),
    [("panelsms", PanelSmsAccount, PanelSmsAdapter), ("brand", BrandAccount, BrandAdapter)],
)
def test_an_account_table_makes_its_adapter(name: str, account: type, adapter: type) -> None:
    parsed = TypeAdapter(ProviderAccount).validate_python(ACCOUNTS[name])
    assert type(parsed) is account
    made = make_adapter(parsed, public_url="https://smsq.example.com")
    assert isinstance(made, adapter) and made.adapter_name == name


def test_an_unknown_adapter_is_refused() -> None:
    with pytest.raises(ValidationError, match="panelsms"):
        TypeAdapter(ProviderAccount).validate_python({"adapter": "other", "url": "http://x"})


def test_report_status_fields() -> None:
    assert report_status_field("brand") == "statusID"
    assert report_status_field("panelsms") == "status"
    assert report_status_field("gone") == "status"


def _imports(folder: Path) -> set[tuple[str, str]]:
    found = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            found.update((str(path.relative_to(ROOT)), name) for name in names)
    return found


@pytest.mark.parametrize(
    "folder", ["producer", "worker", "models", "providers/panelsms", "providers/brand"]
)
def test_production_code_does_not_run_on_the_simulator(folder: str) -> None:
    """The drop-in and the adapters share the vendors' protocol, not the test double."""
    offenders = [
        (path, name)
        for path, name in _imports(ROOT / folder)
        if name == "providers.simulator" or name.startswith("providers.simulator.")
    ]
    assert offenders == []
