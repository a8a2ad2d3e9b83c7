"""One way to build a deployable's settings tree (edge and central both use it):
defaults < YAML/TOML file < environment < explicit overrides (command-line flags).

The settings class is a pydantic-settings ``BaseSettings`` with :class:`LayeredSources`
mixed in: its own sources are its init arguments and the environment (its ``env_prefix``,
nested with ``__``); its models forbid extra keys, so an unknown key from any layer is a
validation error that names it. :func:`load_layered` reads the file, takes what the
environment set (instantiating the class with no arguments reads exactly that), merges the
layers key by key and validates once.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml
from pydantic import BaseModel, SecretBytes, SecretStr

if TYPE_CHECKING:  # only the settings classes themselves need pydantic-settings
    from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

S = TypeVar("S", bound=BaseModel)


class LayeredSources:
    """Mixin for a ``BaseSettings`` class loaded by :func:`load_layered`: explicit
    arguments (the file with the flags over it) win over the environment, which wins
    over secret files; no ``.env`` file is read."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, file_secret_settings)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``; nested mappings are merged, not replaced."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_config_file(path: Path) -> dict[str, Any]:
    """Reads a YAML or TOML (by the ``.toml`` suffix) config file into a dict."""
    text = path.read_text(encoding="utf-8")
    data: Any = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the config file must hold a mapping at its top level")
    return data


def _reveal(value: Any) -> Any:
    """Secrets as plain values again, so they validate a second time."""
    if isinstance(value, dict):
        return {k: _reveal(v) for k, v in value.items()}
    if isinstance(value, SecretStr | SecretBytes):
        return value.get_secret_value()
    return value


def load_layered(cls: type[S], config_file: Path | None,
                 overrides: dict[str, Any]) -> S:
    """``cls`` from the file, then the environment, then ``overrides`` (nested dicts,
    already free of flags that were not given)."""
    file_data = read_config_file(config_file) if config_file else {}
    env_data = _reveal(cls().model_dump(exclude_unset=True))  # what the environment set
    return cls(**deep_merge(deep_merge(file_data, env_data), overrides))
