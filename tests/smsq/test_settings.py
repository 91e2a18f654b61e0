from __future__ import annotations

from pathlib import Path

import pytest

from providers.accounts import BrandAccount, PanelSmsAccount
from smsq.core.settings import ProvidersFileError, Settings

GOOD = """
[providers.panel]
adapter = "panelsms"
url = "http://127.0.0.1:8025/sendMtSms.php"
user = "demo@example.com"
api_key = "s3cret-panel"
sender = "SMSQ"
response_type = "json"
rate = 100
burst = 100
dlr = true

[providers.brand]
adapter = "brand"
url = "http://127.0.0.1:8025/brand/send"
key = "s3cret-brand"
brand_id = "ACME"
callback_key = "cb-secret"
max_numbers = 500
rate = 200
burst = 200
"""


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (
        "DATABASE_URL",
        "REDIS_URL",
        "BROKER_URL",
        "PROVIDERS_FILE",
        "DEFAULT_PROVIDER",
        "PUBLIC_URL",
    ):
        monkeypatch.delenv(f"SMSQ_{name}", raising=False)
    return monkeypatch


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "providers.toml"
    path.write_text(text)
    return path


def test_defaults_need_no_configuration(clean_env: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert settings.database_url == "sqlite:///./smsq.db"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.effective_broker_url == settings.redis_url
    assert set(settings.providers) == {"panel", "brand"}  # demo accounts for the simulator
    assert settings.default_provider_name == "panel"


def test_environment_overrides(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("SMSQ_DATABASE_URL", "postgresql://db/smsq")
    clean_env.setenv("SMSQ_BROKER_URL", "redis://broker:6379/1")
    clean_env.setenv("SMSQ_PUBLIC_URL", "https://sms.example.com/")
    clean_env.setenv("SMSQ_PROVIDERS_FILE", str(write(tmp_path, GOOD)))
    clean_env.setenv("SMSQ_DEFAULT_PROVIDER", "brand")
    settings = Settings()
    assert settings.database_url == "postgresql://db/smsq"
    assert settings.effective_broker_url == "redis://broker:6379/1"
    assert settings.public_url == "https://sms.example.com"
    assert settings.default_provider_name == "brand"
    panel, brand = settings.providers["panel"], settings.providers["brand"]
    assert isinstance(panel, PanelSmsAccount) and isinstance(brand, BrandAccount)
    assert panel.name == "panel" and panel.rate == 100 and panel.response_type == "json"
    assert brand.max_numbers == 500 and brand.brand_id == "ACME"


def test_credentials_never_show(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SMSQ_PROVIDERS_FILE", str(write(tmp_path, GOOD)))
    settings = Settings()
    shown = repr(settings.providers) + str(settings.providers) + repr(settings)
    for secret in ("s3cret-panel", "s3cret-brand", "cb-secret"):
        assert secret not in shown


def test_unknown_default_provider_is_named(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SMSQ_DEFAULT_PROVIDER", "nope")
    with pytest.raises(ProvidersFileError, match=r"SMSQ_DEFAULT_PROVIDER.*'nope'.*brand, panel"):
        _ = Settings().default_provider_name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD.replace("rate = 100", "rate = -1"),
            r"\[providers.panel\]: field 'rate': .*greater than 0",
        ),
        (
            GOOD.replace('adapter = "brand"', 'adapter = "smpp"'),
            r"\[providers.brand\]: field 'adapter'",
        ),
        (
            GOOD.replace('brand_id = "ACME"\n', ""),
            r"\[providers.brand\]: field 'brand_id': Field required",
        ),
        (
            GOOD.replace('url = "http://127.0.0.1:8025/sendMtSms.php"', 'url = "not a url"'),
            r"\[providers.panel\]: field 'url'",
        ),
        (
            GOOD.replace("dlr = true", "dlr = true\nspeed = 3"),
            r"\[providers.panel\]: field 'speed': Extra",
        ),
        (
            GOOD.replace('response_type = "json"', 'response_type = "yaml"'),
            r"\[providers.panel\]: field 'response_type'",
        ),
        ("[providers]\n", r"no \[providers.<name>\] table"),
        ("[providers.x\n", r"not valid TOML"),
    ],
)
def test_a_malformed_providers_file_names_file_table_and_field(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    clean_env.setenv("SMSQ_PROVIDERS_FILE", str(path))
    with pytest.raises(ProvidersFileError, match=expected) as info:
        _ = Settings().providers
    message = str(info.value)
    assert message.startswith(str(path))
    assert "s3cret" not in message


def test_a_wrong_secret_type_does_not_echo_the_value(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv(
        "SMSQ_PROVIDERS_FILE",
        str(write(tmp_path, GOOD.replace('key = "s3cret-brand"', "key = 12345678"))),
    )
    with pytest.raises(ProvidersFileError, match=r"\[providers.brand\]: field 'key'") as info:
        _ = Settings().providers
    assert "12345678" not in str(info.value)


def test_missing_providers_file(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SMSQ_PROVIDERS_FILE", str(tmp_path / "absent.toml"))
    with pytest.raises(ProvidersFileError, match=r"absent\.toml: file not found"):
        _ = Settings().providers


# --- routes -----------------------------------------------------------------------

ROUTED = (
    GOOD.replace('brand_id = "ACME"', 'brand_id = "SMSQ"')
    + """
[[routes]]
name = "otp"
kinds = ["otp"]
countries = ["DE", "AT"]
prefixes = ["+49151"]
accounts = ["brand", "panel"]

[[routes]]
name = "bulk"
kinds = ["campaign"]
accounts = ["panel", "brand"]
weights = [70, 30]
"""
)


def test_routes_are_read_in_file_order(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SMSQ_PROVIDERS_FILE", str(write(tmp_path, ROUTED)))
    settings = Settings()
    assert list(settings.routes) == ["otp", "bulk"]
    otp, bulk = settings.routes.values()
    assert (otp.kinds, otp.countries, otp.prefixes, otp.accounts, otp.weights) == (
        ("otp",),
        ("DE", "AT"),
        ("+49151",),
        ("brand", "panel"),
        None,
    )
    assert (bulk.accounts, bulk.weights) == (("panel", "brand"), (70, 30))
    assert set(settings.providers) == {"panel", "brand"}


def test_without_routes_there_are_none(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    assert Settings().routes == {}  # the built-in demo providers
    clean_env.setenv("SMSQ_PROVIDERS_FILE", str(write(tmp_path, GOOD)))
    assert Settings().routes == {}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ('accounts = ["brand", "panel"]', 'accounts = ["brand", "acme"]'),
            r"\[\[routes\]\] #1 \('otp'\): field 'accounts': no account named 'acme' "
            r"\(known: brand, panel\)",
        ),
        (
            ('accounts = ["brand", "panel"]', "accounts = []"),
            r"#1 \('otp'\): field 'accounts': .*must not be empty",
        ),
        (
            ('accounts = ["brand", "panel"]', 'accounts = ["brand", "brand"]'),
            r"#1 \('otp'\): field 'accounts': .*'brand' listed twice",
        ),
        (
            ("weights = [70, 30]", "weights = [70]"),
            r"#2 \('bulk'\): field 'weights': .*1 weights for 2 accounts",
        ),
        (
            ("weights = [70, 30]", "weights = [70, 0]"),
            r"#2 \('bulk'\): field 'weights.1': .*greater than 0",
        ),
        (
            ('kinds = ["campaign"]', 'kinds = ["bulk"]'),
            r"#2 \('bulk'\): field 'kinds.0': .*'otp', 'transactional' or 'campaign'",
        ),
        (
            ('countries = ["DE", "AT"]', 'countries = ["DE", "EU"]'),
            r"#1 \('otp'\): field 'countries': .*unknown country code 'EU'",
        ),
        (
            ('prefixes = ["+49151"]', 'prefixes = ["0049151"]'),
            r"#1 \('otp'\): field 'prefixes': .*prefix '0049151'",
        ),
        (
            ('name = "bulk"', 'name = "otp"'),
            r"#2 \('otp'\): field 'name': a route named 'otp' comes earlier",
        ),
        (
            ('name = "bulk"', 'name = "panel"'),
            r"#2 \('panel'\): field 'name': 'panel' is an account's name",
        ),
        (
            ('name = "bulk"\n', ""),
            r"\[\[routes\]\] #2: field 'name': Field required",
        ),
        (
            ('brand_id = "SMSQ"', 'brand_id = "ACME"'),
            r"#1 \('otp'\): field 'accounts': the accounts show recipients different senders "
            r"\(brand: 'ACME', panel: 'SMSQ'\)",
        ),
    ],
)
def test_a_bad_route_names_file_table_and_field(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, change: tuple[str, str], expected: str
) -> None:
    old, new = change
    assert old in ROUTED
    path = write(tmp_path, ROUTED.replace(old, new, 1))
    clean_env.setenv("SMSQ_PROVIDERS_FILE", str(path))
    with pytest.raises(ProvidersFileError, match=expected) as info:
        _ = Settings().routes
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "s3cret" not in message and "cb-secret" not in message


def test_routes_must_be_an_array_of_tables(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, GOOD + '\n[routes.otp]\naccounts = ["panel"]\n')
    clean_env.setenv("SMSQ_PROVIDERS_FILE", str(path))
    with pytest.raises(ProvidersFileError, match=r"routes must be \[\[routes\]\] tables"):
        _ = Settings().providers
