"""Named profiles (several Backd accounts): where each setting comes from, what is refused, one run across two accounts."""

from __future__ import annotations

import pytest

from backd_ops.config import Settings, list_profiles, read_profiles
from backd_ops.errors import ConfigurationError

PROFILES = """
[us]
environment = "sandbox"
public_key = "pk_us_file"
base_url = "http://127.0.0.1:9001/v1/backd/bnpl/api"

[eu-west]
public_key = "pk_eu_file"
"""


@pytest.fixture
def profiles_dir(tmp_path, monkeypatch):
    (tmp_path / "backd_profiles.toml").write_text(PROFILES)
    (tmp_path / ".env").write_text("BACKD_SECRET_KEY_US=sk_us_from_dotenv\nBACKD_PUBLIC_KEY=pk_plain\nBACKD_SECRET_KEY=sk_plain\n")
    for name in ("BACKD_PROFILE", "BACKD_PROFILES_FILE", "BACKD_PUBLIC_KEY", "BACKD_SECRET_KEY", "BACKD_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_a_profile_takes_its_file_table_and_its_own_secret(profiles_dir):
    settings = Settings.from_env({}, dotenv_path=profiles_dir / ".env", profile="us")
    assert (settings.profile, settings.public_key, settings.secret_key.reveal()) == ("us", "pk_us_file", "sk_us_from_dotenv")
    assert settings.base_url == "http://127.0.0.1:9001/v1/backd/bnpl/api"
    assert "sk_us" not in repr(settings)


def test_variables_override_the_file_and_the_plain_keys_are_never_borrowed(profiles_dir):
    env = {"BACKD_PROFILE": "eu-west", "BACKD_PUBLIC_KEY_EU_WEST": "pk_eu_env"}
    with pytest.raises(ConfigurationError, match="BACKD_SECRET_KEY_EU_WEST") as info:
        Settings.from_env(env, dotenv_path=profiles_dir / ".env")  # BACKD_SECRET_KEY (another account's) is not used
    assert "sk_plain" not in str(info.value)
    settings = Settings.from_env({**env, "BACKD_SECRET_KEY_EU_WEST": "sk_eu"}, dotenv_path=profiles_dir / ".env")
    assert (settings.public_key, settings.secret_key.reveal(), settings.environment) == ("pk_eu_env", "sk_eu", "sandbox")
    assert Settings.from_env({}, dotenv_path=profiles_dir / ".env").public_key == "pk_plain"  # no profile: as before


def test_unknown_profiles_and_secrets_in_the_file_are_refused(profiles_dir):
    with pytest.raises(ConfigurationError, match=r"unknown profile 'uk'; known: us, eu-west"):
        Settings.from_env({}, dotenv_path=profiles_dir / ".env", profile="uk")
    (profiles_dir / "backd_profiles.toml").write_text('[us]\npublic_key = "pk"\nsecret_key = "sk_live_oops"\n')
    with pytest.raises(ConfigurationError, match="secrets never go in the profiles file") as info:
        read_profiles(profiles_dir / "backd_profiles.toml")
    assert "sk_live_oops" not in str(info.value)
    (profiles_dir / "backd_profiles.toml").write_text('[us]\npublic_kye = "pk"\n')
    with pytest.raises(ConfigurationError, match="unknown setting public_kye"):
        read_profiles(profiles_dir / "backd_profiles.toml")
    with pytest.raises(ConfigurationError, match="profile name"):
        Settings.from_env({}, dotenv_path=profiles_dir / ".env", profile="../etc")


def test_list_profiles_from_the_file_and_the_variables(profiles_dir):
    assert list_profiles({"BACKD_PUBLIC_KEY_APAC": "pk"}, dotenv_path=profiles_dir / ".env") == ["us", "eu-west", "apac"]


def test_read_profiles_of_a_missing_file_is_empty(tmp_path):
    assert read_profiles(tmp_path / "none.toml") == {}
