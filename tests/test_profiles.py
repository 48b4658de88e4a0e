"""Named profiles (several Backd accounts): where each setting comes from, what is refused, one run across two accounts."""

from __future__ import annotations

import json

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


def _ledger_rows(sb, brand: str) -> list[dict]:
    rows = []
    for backd_order_id in sb.store.ids():
        order = sb.store.find(backd_order_id)
        refunded = sum(r["amount"] for r in order["refunds"] if r["status"] != "declined")
        rows.append({"Brand": brand, "merchant_order_id": order["merchant_order_id"], "backd_order_id": backd_order_id,
                     "status": order["status"], "order_total": f"{order['order_total']:.2f}", "refunded_amount": f"{refunded:.2f}"})
    return rows


def test_one_ledger_reconciles_against_two_accounts(two_accounts):
    import pandas as pd

    import backd_ops

    us, eu = two_accounts
    us_rows, eu_rows = _ledger_rows(us, "Brand A"), _ledger_rows(eu, "Brand B")
    eu_rows[0]["order_total"] = "999999.00"  # a difference in the eu account only; the us order of that id matches
    ledger = pd.DataFrame(us_rows + eu_rows)
    clients = {name: backd_ops.connect(profile=name) for name in ("us", "eu")}
    assert clients["eu"].public_key == "pk_sandbox_eu" and "profile='eu'" in repr(clients["eu"])
    us.app.requests.clear(), eu.app.requests.clear()
    rec = backd_ops.reconcile_accounts(ledger, clients, profile_map={"brand a": "us", "Brand B": "eu"},
                                       column_map={"Brand": "profile"}, stale_days=10_000, progress=False)
    read = {name: {r["backd_order_id"] for r in sb.requests if r["endpoint"] == "find_order"} for name, sb in (("us", us), ("eu", eu))}
    assert read["us"] == set(us.store.ids()) and read["eu"] == set(eu.store.ids())  # each account read only its rows
    totals = rec.discrepancies[rec.discrepancies.kind == "order_total_mismatch"]
    assert totals[["profile", "backd_order_id"]].values.tolist() == [["eu", eu_rows[0]["backd_order_id"]]]
    assert set(rec.record.profiles) == {"us", "eu"} and rec.record.account is None
    about = rec.record.about()
    assert "us: " in about["Profiles"] and "eu: " in about["Profiles"] and "sk_sandbox" not in str(about)


def test_a_row_with_no_known_profile_stops_the_run_before_any_request(two_accounts):
    import pandas as pd

    import backd_ops
    from backd_ops.errors import InputError

    us, eu = two_accounts
    rows = _ledger_rows(us, "Brand A")[:3] + [{**_ledger_rows(eu, "Brand C")[0]}]
    clients = {name: backd_ops.connect(profile=name) for name in ("us", "eu")}
    us.app.requests.clear(), eu.app.requests.clear()
    with pytest.raises(InputError, match=r"column profile \(row 3: 'Brand C'\)"):
        backd_ops.reconcile_accounts(pd.DataFrame(rows), clients, profile_map={"Brand A": "us", "Brand B": "eu"},
                                     column_map={"Brand": "profile"}, progress=False)
    assert us.requests == [] and eu.requests == []


def test_the_cli_takes_a_profile_and_reconciles_several(two_accounts, tmp_path, capsys):
    import pandas as pd

    from backd_ops.cli import main

    us, eu = two_accounts
    assert main(["find", us.store.ids()[0], "--profile", "eu", "--progress", "off"]) == 0
    assert "key …x_eu" in capsys.readouterr().out  # the header names the account the command worked on
    assert [r["backd_order_id"] for r in eu.requests] == [us.store.ids()[0]] and us.requests == []
    rows = _ledger_rows(us, "Brand A") + _ledger_rows(eu, "Brand B")
    rows[-1]["order_total"] = "999999.00"
    ledger = tmp_path / "ledger.csv"
    pd.DataFrame(rows).to_csv(ledger, index=False)
    out = tmp_path / "out"
    assert main(["reconcile", "--ledger", str(ledger), "--out", str(out), "--profiles", "us,eu", "--column-map", "Brand=profile",
                 "--profile-map", "Brand A=us,Brand B=eu", "--stale-days", "10000", "--progress", "off",
                 "--fail-on", "order_total_mismatch"]) == 1
    printed = capsys.readouterr().out
    assert "profile us" in printed and "profile eu" in printed
    found = pd.read_csv(out / "latest" / "discrepancies.csv")
    assert found.loc[found.kind == "order_total_mismatch", ["profile", "backd_order_id"]].values.tolist() == [["eu", rows[-1]["backd_order_id"]]]
    assert main(["reconcile", "--ledger", str(ledger), "--out", str(out), "--profiles", "us", "--column-map", "Brand=profile",
                 "--progress", "off"]) == 2  # Brand B rows have no profile among those named: refused, nothing read


def test_the_scheduled_notebook_reconciles_several_accounts(two_accounts, tmp_path, monkeypatch):
    """backd-ops run with profiles: one run folder, findings per profile, keys from the environment only."""
    import pandas as pd

    from backd_ops.cli import main
    from backd_ops.sandbox import DEMO_SECRET_KEY

    us, eu = two_accounts
    monkeypatch.setenv("BACKD_OPS_PROGRESS", "plain")
    monkeypatch.setenv("BACKD_OPS_FINDINGS", str(tmp_path / "findings"))
    rows = _ledger_rows(us, "Brand A") + _ledger_rows(eu, "Brand B")
    rows[0]["order_total"] = "999999.00"
    pd.DataFrame(rows).to_csv(tmp_path / "ledger.csv", index=False)
    code = main(["run", "reconciliation", "-p", "ledger_path", str(tmp_path / "ledger.csv"), "-p", "profiles", '["us", "eu"]',
                 "-p", "profile_map", '{"Brand A": "us", "Brand B": "eu"}', "-p", "column_map", '{"Brand": "profile"}',
                 "-p", "stale_days", "10000", "-p", "fail_on", '["order_total_mismatch"]', "--out", str(tmp_path / "out")])
    assert code == 1
    folder = (tmp_path / "out" / "latest").resolve()
    found = pd.read_csv(folder / "discrepancies.csv")
    assert found.loc[found.kind == "order_total_mismatch", ["profile", "backd_order_id"]].values.tolist() == [["us", rows[0]["backd_order_id"]]]
    summary = json.loads((folder / "summary.json").read_text())
    assert set(summary["run"]["profiles"]) == {"us", "eu"}
    executed = next(folder.glob("*.ipynb")).read_text()
    assert DEMO_SECRET_KEY not in executed and "us: Backd sandbox" in executed


def test_names_that_would_share_variables_and_blank_profiles(profiles_dir, monkeypatch):
    (profiles_dir / "backd_profiles.toml").write_text('[us-east]\npublic_key = "pk_a"\n\n[us_east]\npublic_key = "pk_b"\n')
    with pytest.raises(ConfigurationError, match="would share the variables BACKD_\\*_US_EAST"):
        Settings.from_env({"BACKD_SECRET_KEY_US_EAST": "sk_a"}, dotenv_path=profiles_dir / ".env", profile="us_east")
    env = {"BACKD_PROFILE": "eu", "BACKD_PUBLIC_KEY_EU": "pk_eu", "BACKD_SECRET_KEY_EU": "sk_eu",
           "BACKD_PROFILES_FILE": str(profiles_dir / "none.toml")}
    assert Settings.from_env(env, dotenv_path=None, profile="").public_key == "pk_eu"  # blank is no choice: BACKD_PROFILE holds
    assert Settings.from_env(env, dotenv_path=None, profile="EU").public_key == "pk_eu"


def test_a_rate_limit_must_be_a_sane_number_and_caps_only_tighten():
    from backd_ops._ratelimit import RateLimiter

    for bad in (float("inf"), 1e-12, True, 0, -5, float("nan")):
        with pytest.raises(ConfigurationError):
            RateLimiter(bad)
    limiter = RateLimiter(5)
    with limiter.capped(50):
        assert limiter.max_rps == 5  # a cap never loosens the configured rate
    import threading

    free = RateLimiter(None)
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def block_a() -> None:
        with free.capped(5):
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def block_b() -> None:
        a_in.wait(5)
        with free.capped(100):
            b_in.set()
            a_out.wait(5)
            seen["b_after_a"] = free.max_rps  # A left first: B's own cap is still in force

    threads = [threading.Thread(target=block_a), threading.Thread(target=block_b)]
    [t.start() for t in threads]
    [t.join(10) for t in threads]
    assert seen["b_after_a"] == 100 and free.max_rps is None
