"""A real OpenID provider for the tests: Keycloak, on loopback (tests/support/keycloak/).

Its distribution comes from Maven Central like the Kafka broker's jars and is built once (for
an in-memory database) into the cache; each test session starts it from a hard-linked copy of
its own (no two sessions share a data directory), with the test realm imported. And a person
signing in as a browser does, with plain HTTP: the provider's login form filled and posted.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import httpx

from tillstream.dev.ports import free_port
from tillstream.dev.processes import Service

VERSION = "26.5.6"
HERE = Path(__file__).parent / "support" / "keycloak"
REALM = "tillstream"
CLIENT_ID = "tillstream-audit"
CLIENT_SECRET = "tillstream-test-client-secret"
PASSWORDS = {
    "vera": "vera-password",
    "anna": "anna-password",
    "lena": "lena-password",
    "finn": "finn-password",  # head office IT: viewer and fleet (manages the estate)
}


def built(cache: Path) -> Path:
    """Keycloak's distribution, fetched and built for an in-memory database, once."""
    home = cache / f"keycloak-{VERSION}"
    if (home / ".built").exists():
        return home
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        subprocess.run(
            ["mvn", "-B", "-q", "dependency:copy",
             f"-Dartifact=org.keycloak:keycloak-quarkus-dist:{VERSION}:zip",
             f"-DoutputDirectory={scratch}"],
            check=True, timeout=900, capture_output=True,
        )  # fmt: skip
        shutil.unpack_archive(Path(scratch) / f"keycloak-quarkus-dist-{VERSION}.zip", scratch)
        dist = Path(scratch) / f"keycloak-{VERSION}"
        for script in (dist / "bin").glob("*.sh"):  # zip files keep no modes
            script.chmod(0o755)
        shutil.rmtree(dist / "data", ignore_errors=True)
        subprocess.run(
            [str(dist / "bin" / "kc.sh"), "build", "--db=dev-mem"],
            check=True, timeout=600, capture_output=True, env=_java_env(),
        )  # fmt: skip
        (dist / ".built").touch()
        if not (home / ".built").exists():  # another session may have built it meanwhile
            shutil.rmtree(home, ignore_errors=True)
            dist.rename(home)
    return home


@dataclass
class Provider:
    issuer: str
    service: Service

    @property
    def url(self) -> str:
        return self.service.url


def start(cache: Path, workdir: Path) -> Provider:
    """Keycloak on a free loopback port with the test realm; started means its realm's
    OpenID configuration answers."""
    home = built(cache)
    run = workdir / "keycloak"
    shutil.copytree(home, run, copy_function=os.link)  # hard links: a copy of its own
    (run / "data" / "import").mkdir(parents=True)
    shutil.copy(HERE / "realm.json", run / "data" / "import" / "realm.json")
    port = free_port()
    service = Service(
        "keycloak",
        ["start", "--optimized", "--http-enabled=true", "--http-host=127.0.0.1",
         f"--http-port={port}", "--hostname-strict=false", "--import-realm"],
        port,
        workdir / "keycloak.log",
        env=_java_env(),
        ready_path=f"/realms/{REALM}/.well-known/openid-configuration",
        command=(str(run / "bin" / "kc.sh"),),
        cwd=run,
    ).start()  # fmt: skip
    service.wait_ready(180)
    return Provider(f"{service.url}/realms/{REALM}", service)


def _java_env() -> dict[str, str]:
    """Keycloak runs on the machine's Java (17 or newer), with little memory (tests)."""
    return {"JAVA_OPTS_KC_HEAP": "-Xms64m -Xmx512m", "PATH": os.environ.get("PATH", "")}


_FORM = re.compile(r'<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"', re.S)


async def sign_in(client: httpx.AsyncClient, start: str, user: str) -> httpx.Response:
    """Sign ``user`` in as a browser does, from ``start`` (a page of the service): followed to
    the provider's login form, which is filled and posted, and back to the service."""
    login = await client.get(start, follow_redirects=True)
    found = _FORM.search(login.text)
    assert found, f"no login form at {login.url}: {login.text[:300]}"
    action = urljoin(str(login.url), html.unescape(found.group(1)))
    for cookie in client.cookies.jar:
        # The provider marks its cookies Secure; a browser sends those to loopback over plain
        # HTTP (a secure context), Python's cookie jar does not, so it is told to.
        cookie.secure = False
    return await client.post(
        action,
        data={"username": user, "password": PASSWORDS[user], "credentialId": ""},
        follow_redirects=True,
    )


def realm_settings(provider: Provider) -> dict[str, str]:
    """The audit service's sign-in settings for this provider."""
    return {
        "TILLSTREAM_OIDC_ISSUER": provider.issuer,
        "TILLSTREAM_OIDC_CLIENT_ID": CLIENT_ID,
        "TILLSTREAM_OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "TILLSTREAM_SESSION_SECRET": "s" * 48,
    }


def realm() -> dict[str, object]:
    loaded: dict[str, object] = json.loads((HERE / "realm.json").read_text())
    return loaded
