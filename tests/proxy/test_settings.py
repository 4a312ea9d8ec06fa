"""Settings: environment over file over defaults, and a bad value names its variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy import SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("STILLROOM_") or name == "OPENAI_API_KEY":
            monkeypatch.delenv(name)


def test_defaults_are_a_local_sqlite_file_and_openai() -> None:
    settings = load_settings()
    assert settings.database_url == "sqlite:///./stillroom.db"
    assert settings.upstream_base_url == "https://api.openai.com/v1"
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 8000, 1)
    assert settings.upstream_api_key is None and settings.admin_key is None


def test_upstream_key_falls_back_to_openai_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-openai-var")
    assert load_settings().upstream_api_key is not None
    assert load_settings().upstream_api_key.get_secret_value() == "sk-from-openai-var"  # type: ignore[union-attr]
    monkeypatch.setenv("STILLROOM_UPSTREAM_API_KEY", "sk-from-stillroom-var")
    assert load_settings().upstream_api_key.get_secret_value() == "sk-from-stillroom-var"  # type: ignore[union-attr]


def test_environment_wins_over_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "stillroom.toml"
    config.write_text('port = 9100\nupstream_base_url = "http://upstream.test/v1/"\n')
    from_file = load_settings(config)
    assert from_file.port == 9100
    assert from_file.upstream_base_url == "http://upstream.test/v1"
    monkeypatch.setenv("STILLROOM_PORT", "9200")
    assert load_settings(config).port == 9200


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("STILLROOM_PORT", "eighty"),
        ("STILLROOM_DATABASE_URL", "mysql://nope"),
        ("STILLROOM_UPSTREAM_BASE_URL", "api.openai.com"),
        ("STILLROOM_WORKERS", "-1"),
        ("STILLROOM_WORKERS", "many"),
    ],
)
def test_bad_value_stops_with_a_message_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings()


def test_unknown_key_in_config_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "stillroom.toml"
    config.write_text("prot = 1\n")
    with pytest.raises(SettingsError, match="STILLROOM_PROT"):
        load_settings(config)


def test_missing_config_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "absent.toml")


def test_a_vllm_upstream_names_its_kind_and_every_replica(tmp_path: Path) -> None:
    config = tmp_path / "stillroom.toml"
    config.write_text(
        "[upstreams.gpu]\n"
        'kind = "vllm"\n'
        'base_url = "http://vllm.internal:8000/v1/"\n'
        'replicas = ["http://10.0.0.1:8000/v1", "http://10.0.0.2:8000/v1/"]\n'
        "[upstreams.laptop]\n"
        'kind = "transformers"\n'
        'base_url = "http://127.0.0.1:8001/v1"\n'
    )
    settings = load_settings(config)
    gpu, laptop = settings.upstreams["gpu"], settings.upstreams["laptop"]
    assert (gpu.kind, gpu.replica_urls) == (
        "vllm",
        ("http://10.0.0.1:8000/v1", "http://10.0.0.2:8000/v1"),
    )
    assert (laptop.kind, laptop.replica_urls) == ("transformers", ("http://127.0.0.1:8001/v1",))


def test_an_unknown_upstream_kind_or_a_replica_that_is_no_url_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "stillroom.toml"
    config.write_text('[upstreams.gpu]\nkind = "tgi"\nbase_url = "http://a/v1"\n')
    with pytest.raises(SettingsError, match=r"STILLROOM_UPSTREAMS\.GPU\.KIND"):
        load_settings(config)
    config.write_text('[upstreams.gpu]\nbase_url = "http://a/v1"\nreplicas = ["10.0.0.1"]\n')
    with pytest.raises(
        SettingsError,
        match=r"STILLROOM_UPSTREAMS\.GPU\.REPLICAS: Value error, must start with http",
    ):
        load_settings(config)
