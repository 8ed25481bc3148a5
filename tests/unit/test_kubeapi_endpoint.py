"""How the agent's own client (``kubeapi``) turns a login into requests, and which failures
it calls an outage. The same client against a real API server (client certificate, token,
in-cluster token file) is in tests/k8s/test_kubeapi.py."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import aiohttp
import kopf
import pytest

from rkt_operator import kopfapp, kubeapi, settings


def test_a_token_login_sends_its_scheme_and_never_shows_the_token() -> None:
    plain = kubeapi.from_login(kopf.ConnectionInfo(server="http://api:8080/", token="t0k"))
    assert plain.server == "http://api:8080"
    assert plain.tls is None
    assert plain.authorization() == "Bearer t0k"
    assert "t0k" not in repr(plain)
    other = kubeapi.from_login(
        kopf.ConnectionInfo(server="https://api", token="t0k", scheme="Token")
    )
    assert other.authorization() == "Token t0k"
    assert isinstance(other.tls, ssl.SSLContext)
    assert other.tls.verify_mode == ssl.CERT_REQUIRED


def test_basic_auth_insecure_and_proxy() -> None:
    info = kopf.ConnectionInfo(
        server="https://api", username="ann", password="pw", insecure=True,
        proxy_url="http://proxy:3128",
    )  # fmt: skip
    found = kubeapi.from_login(info)
    assert found.authorization() == "Basic " + base64.b64encode(b"ann:pw").decode()
    assert found.tls is not None
    assert (found.tls.verify_mode, found.tls.check_hostname) == (ssl.CERT_NONE, False)
    assert found.proxy == "http://proxy:3128"
    assert kubeapi.from_login(kopf.ConnectionInfo(server="http://api")).authorization() is None


def test_unusable_tls_settings_are_a_login_error_without_their_content() -> None:
    with pytest.raises(kubeapi.LoginError, match="not valid base64") as bad:
        kubeapi.from_login(kopf.ConnectionInfo(server="https://api", ca_data="%%secret%%"))
    assert "secret" not in str(bad.value)
    not_pem = base64.b64encode(b"no certificate here").decode()
    with pytest.raises(kubeapi.LoginError, match="TLS settings"):
        kubeapi.from_login(kopf.ConnectionInfo(server="https://api", ca_data=not_pem))


def test_in_cluster_without_its_ca_bundle_is_a_login_error(tmp_path: Path) -> None:
    access = settings.in_cluster_access(
        {
            "KUBERNETES_SERVICE_HOST": "10.0.0.1",
            "KUBERNETES_SERVICE_PORT": "443",
            "RKT_OPERATOR_SERVICE_ACCOUNT_DIR": str(tmp_path),
        }
    )
    with pytest.raises(kubeapi.LoginError, match="CA bundle"):
        kopfapp.agent_endpoint(access)


def test_without_a_pod_or_a_kubeconfig_the_agent_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(kubeapi.LoginError, match="no kubeconfig"):
        kopfapp.agent_endpoint(None)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    with pytest.raises(kubeapi.LoginError, match="cannot read the kubeconfig"):
        kopfapp.agent_endpoint(None)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (kubeapi.ApiError(503, "ServiceUnavailable"), "HTTP 503 ServiceUnavailable"),
        (kubeapi.ApiError(429, "TooManyRequests", "slow down"), "HTTP 429 TooManyRequests"),
        (kubeapi.ApiError(404, "NotFound"), None),
        (kubeapi.ApiError(403, "Forbidden", "no"), None),
        (aiohttp.ClientConnectionError("refused"), "ClientConnectionError: refused"),
        (ConnectionResetError("reset by peer"), "ConnectionResetError: reset by peer"),
        (TimeoutError(), "TimeoutError"),
        (ValueError("a bug"), None),
    ],
)
def test_outage_is_what_a_retry_can_mend(exc: BaseException, expected: str | None) -> None:
    assert kubeapi.outage(exc) == expected


def test_outage_looks_through_the_cause() -> None:
    outer = RuntimeError("while patching")
    outer.__cause__ = kubeapi.ApiError(500, "InternalError")
    assert kubeapi.outage(outer) == "HTTP 500 InternalError"
