"""Which accounts send delivery reports: the rule the unknown-resend relies on."""

from __future__ import annotations

from providers.accounts import BrandAccount, PanelSmsAccount


def test_panelsms_expects_reports_when_it_asks_for_them() -> None:
    base = {"adapter": "panelsms", "url": "http://p.test", "user": "u", "api_key": "k"}
    assert PanelSmsAccount.model_validate(base).expects_reports
    assert not PanelSmsAccount.model_validate({**base, "dlr": False}).expects_reports


def test_brand_expects_reports_only_with_a_callback_key() -> None:
    base = {"adapter": "brand", "url": "http://b.test", "key": "k", "brand_id": "B"}
    assert not BrandAccount.model_validate(base).expects_reports
    assert BrandAccount.model_validate({**base, "callback_key": "cb"}).expects_reports
