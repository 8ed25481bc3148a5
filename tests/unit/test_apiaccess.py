"""In-cluster API access as client-go does it: the address from the service variables (IPv6
in brackets, no DNS), the token file re-read when it changes, kopf's credentials short-lived.
The live proof (a real API server, TokenRequest tokens, rotation) is in
tests/chart/test_agent_with_chart_rbac.py."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import kopf
import pytest

from rkt_operator import apiaccess, kopfapp, kubeclient, settings


def access(tmp_path: Path, host: str = "10.0.0.1", port: str = "443") -> settings.InClusterAccess:
    found = settings.in_cluster_access(
        {
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": port,
            "RKT_OPERATOR_SERVICE_ACCOUNT_DIR": str(tmp_path),
        }
    )
    assert found is not None
    return found


@pytest.mark.parametrize(
    ("host", "server"),
    [
        ("10.96.0.1", "https://10.96.0.1:6443"),
        ("fd00:10:96::1", "https://[fd00:10:96::1]:6443"),
        ("api.example.com", "https://api.example.com:6443"),
    ],
)
def test_server_from_the_service_variables(tmp_path: Path, host: str, server: str) -> None:
    assert access(tmp_path, host, "6443").server == server


def test_not_in_a_pod_without_both_variables() -> None:
    assert settings.in_cluster_access({}) is None
    assert settings.in_cluster_access({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}) is None
    assert settings.in_cluster_access({"KUBERNETES_SERVICE_PORT": "443"}) is None


def test_default_service_account_directory() -> None:
    found = settings.in_cluster_access(
        {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    )
    assert found is not None
    assert found.token_file == Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
    assert found.ca_file == Path("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")


def test_token_file_is_read_again_after_a_symlink_swap(tmp_path: Path) -> None:
    (tmp_path / "..1").mkdir()
    (tmp_path / "..1" / "token").write_text("first\n")
    (tmp_path / "..data").symlink_to("..1")
    (tmp_path / "token").symlink_to("..data/token")
    token = apiaccess.TokenFile(tmp_path / "token")
    assert token.read() == "first"
    (tmp_path / "..2").mkdir()
    (tmp_path / "..2" / "token").write_text("second\n")
    (tmp_path / "..tmp").symlink_to("..2")
    os.replace(tmp_path / "..tmp", tmp_path / "..data")
    assert token.read() == "second"


def test_an_empty_or_missing_token_is_an_error_without_the_token(tmp_path: Path) -> None:
    token = apiaccess.TokenFile(tmp_path / "token")
    with pytest.raises(apiaccess.TokenUnavailable, match="cannot read"):
        token.read()
    (tmp_path / "token").write_text("")
    with pytest.raises(apiaccess.TokenUnavailable, match="empty"):
        token.read()


def test_client_configuration_reads_the_token_before_each_request(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("one")
    configuration = kubeclient.client_configuration(access(tmp_path))
    assert configuration.host == "https://10.0.0.1:443"
    assert configuration.ssl_ca_cert == str(tmp_path / "ca.crt")
    assert configuration.get_api_key_with_prefix("BearerToken") == "Bearer one"
    (tmp_path / "token").write_text("two, longer")  # another size: a change even within 1 ns
    assert configuration.get_api_key_with_prefix("BearerToken") == "Bearer two, longer"


def test_kopf_credentials_expire_within_a_minute(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("tok")
    (tmp_path / "namespace").write_text("rkt-operator\n")
    found = access(tmp_path)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    creds = apiaccess.kopf_credentials(found, apiaccess.TokenFile(found.token_file), now=now)
    assert creds.server == "https://10.0.0.1:443"
    assert creds.token == "tok"
    assert creds.default_namespace == "rkt-operator"
    assert creds.expiration == now + timedelta(seconds=60)


def test_kopf_login_handler_builds_connection_info(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("tok")
    found = access(tmp_path, "fd00::1", "6443")
    info = kopfapp.login_in_cluster(found, apiaccess.TokenFile(found.token_file))
    assert info.server == "https://[fd00::1]:6443"
    assert info.scheme == "Bearer"
    assert info.token == "tok"
    assert info.ca_path == str(tmp_path / "ca.crt")
    assert info.expiration is not None
    (tmp_path / "token").unlink()
    with pytest.raises(kopf.TemporaryError):
        kopfapp.login_in_cluster(found, apiaccess.TokenFile(found.token_file))
