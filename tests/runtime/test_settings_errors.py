"""A mistake in a service's environment stops it with a message, not a traceback."""

from __future__ import annotations

import pytest
from pydantic_settings import SettingsConfigDict

from microforge.runtime.settings import ServiceSettings, load_settings


class ShopSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SHOP_", extra="ignore")


def test_each_bad_variable_is_named_without_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_POOL_SIZE", "many")
    monkeypatch.setenv("SHOP_DATABASE_URL", "postgres://shop:s3cret@db/shop")
    with pytest.raises(SystemExit) as stopped:
        load_settings(ShopSettings)
    message = str(stopped.value.code)
    assert message.startswith("Invalid settings in the environment:")
    assert "SHOP_POOL_SIZE: Input should be a valid integer" in message
    assert "SHOP_DATABASE_URL: unsupported driver 'postgres'" in message
    assert "postgresql+asyncpg" in message  # how to fix it
    assert "s3cret" not in message


def test_a_rule_across_variables_is_reported_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_DATABASE_URL", "sqlite+aiosqlite:///shop.db")
    monkeypatch.setenv("SHOP_CACHE_BUS", "true")
    monkeypatch.delenv("SHOP_REDIS_URL", raising=False)
    with pytest.raises(SystemExit) as stopped:
        load_settings(ShopSettings)
    assert "SHOP_CACHE_BUS needs SHOP_REDIS_URL" in str(stopped.value.code)


def test_good_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_DATABASE_URL", "sqlite+aiosqlite:///shop.db")
    monkeypatch.setenv("SHOP_POOL_SIZE", "7")
    assert load_settings(ShopSettings).pool_size == 7
