"""Images: fetch of ACI files, the store listing, signature policy and ``trust``."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from contractlib import Images, Keys, Rkt


def test_fetch_prints_the_short_and_full_image_id(rkt: Rkt, images: Images) -> None:
    short = rkt.ok("fetch", str(images.shell), insecure="image").strip()
    full = rkt.ok("fetch", "--full", str(images.shell), insecure="image").strip()
    assert re.fullmatch(r"sha512-[0-9a-f]{32}", short)
    assert re.fullmatch(r"sha512-[0-9a-f]{64}", full)
    assert full.startswith(short)


def test_image_list_json_shows_fetched_images(rkt: Rkt, images: Images) -> None:
    assert rkt.ok("image", "list", "--format=json").strip() == "null"
    key = rkt.ok("fetch", "--full", str(images.sleeper), insecure="image").strip()
    listed = json.loads(rkt.ok("image", "list", "--format=json"))
    assert [entry["id"] for entry in listed] == [key]
    entry = listed[0]
    assert entry["name"] == "example.com/sleeper:1.0.0"
    assert entry["import_time"] > 10**18  # nanoseconds
    assert entry["last_used_time"] >= entry["import_time"]
    assert entry["size"] > images.sleeper.stat().st_size // 2


def test_image_list_text_has_a_tab_separated_legend(rkt: Rkt, images: Images) -> None:
    rkt.ok("fetch", str(images.shell), insecure="image")
    lines = rkt.ok("image", "list").splitlines()
    assert re.split(r"\t+", lines[0]) == ["ID", "NAME", "SIZE", "IMPORT TIME", "LAST USED"]
    assert re.split(r"\t+", lines[1])[1] == "example.com/shell:1.0.0"


def test_unsigned_image_is_refused_without_insecure_options(rkt: Rkt, images: Images) -> None:
    for command in (["fetch"], ["prepare", "--quiet"]):
        done = rkt.run(*command, str(images.shell))
        assert done.returncode == 254
        assert done.stderr.startswith(f"{command[0]}: ")
        assert ".aci.asc" in done.stderr
    assert rkt.ok("list", "--format=json").strip() == "null"


def test_insecure_options_all_also_skips_the_signature(rkt: Rkt, images: Images) -> None:
    assert rkt.ok("fetch", str(images.shell), insecure="all").startswith("sha512-")


def test_trust_a_prefix_with_a_local_key(rkt: Rkt, keys: Keys) -> None:
    key = keys.trusted
    done = rkt.run(
        "trust", "--prefix=example.com/sleeper", "--skip-fingerprint-review", str(key.public)
    )
    assert done.returncode == 0, done.stderr
    groups = [key.fingerprint[i : i + 4] for i in range(0, 40, 4)]
    expected_fpr = " ".join(groups[:5]) + "  " + " ".join(groups[5:])
    lines = done.stdout.splitlines()
    assert f"gpg key fingerprint is: {expected_fpr}" in lines
    assert f"\tTest <{key.email}>" in lines
    stored = rkt.local_config / "trustedkeys/prefix.d/example.com/sleeper" / key.fingerprint.lower()
    assert lines[-1] == f'Added key for prefix "example.com/sleeper" at "{stored}"'
    assert stored.is_file()


def test_trust_error_paths(rkt: Rkt, keys: Keys, tmp_path: Path) -> None:
    public = str(keys.trusted.public)
    root_trust = rkt.run("trust", "--skip-fingerprint-review", public)
    assert root_trust.returncode == 254
    assert "aborting due to implicit unbounded trust (root domain)" in root_trust.stderr
    both = rkt.run("trust", "--root", "--prefix=example.com", public)
    assert both.returncode == 254
    assert "--root and --prefix usage mutually exclusive" in both.stderr
    scheme = rkt.run("trust", "--prefix=https://example.com", public)
    assert scheme.returncode == 254
    assert "--prefix must not contain a URL scheme, omit https://" in scheme.stderr
    missing = rkt.run(
        "trust", "--prefix=example.com", "--skip-fingerprint-review", str(tmp_path / "nope")
    )
    assert missing.returncode == 254
    assert "no such file or directory" in missing.stderr
    not_a_key = tmp_path / "not-a-key.asc"
    not_a_key.write_text("hello\n")
    garbage = rkt.run("trust", "--prefix=example.com", "--skip-fingerprint-review", str(not_a_key))
    assert garbage.returncode == 254
    assert garbage.stderr.startswith("trust: error adding keys: ")


def test_trust_refuses_an_eddsa_key(rkt: Rkt, keys: Keys) -> None:
    done = rkt.run(
        "trust", "--prefix=example.com/sleeper", "--skip-fingerprint-review", str(keys.eddsa.public)
    )
    assert done.returncode == 254
    assert (
        done.stderr
        == "trust: error adding keys: openpgp: unsupported feature: public key type: 22\n"
    )
    assert not (rkt.local_config / "trustedkeys").exists()


def test_trust_without_review_flag_needs_a_tty(rkt: Rkt, keys: Keys) -> None:
    done = rkt.run("trust", "--prefix=example.com/sleeper", str(keys.trusted.public))
    assert done.returncode == 254
    assert "unable to ask user to review fingerprint due to lack of tty" in done.stderr
    assert not (rkt.local_config / "trustedkeys").exists()


def test_signed_image_needs_a_trusted_key_for_its_prefix(
    rkt: Rkt, images: Images, keys: Keys, tmp_path: Path
) -> None:
    image = Path(shutil.copy(images.sleeper, tmp_path / "sleeper.aci"))
    keys.trusted.sign(image)
    untrusted = rkt.run("fetch", str(image))
    assert untrusted.returncode == 254
    rkt.ok(
        "trust", "--prefix=example.com/other", "--skip-fingerprint-review", str(keys.trusted.public)
    )
    assert rkt.run("fetch", str(image)).returncode == 254  # the key covers another prefix
    rkt.ok(
        "trust",
        "--prefix=example.com/sleeper",
        "--skip-fingerprint-review",
        str(keys.trusted.public),
    )
    assert rkt.ok("fetch", str(image)).startswith("sha512-")
    forged = Path(shutil.copy(images.sleeper, tmp_path / "forged.aci"))
    keys.stranger.sign(forged)
    refused = rkt.run("fetch", str(forged))
    assert refused.returncode == 254
    assert refused.stderr.splitlines() == [
        "image: If you expected the signing key to change, try running:",
        "image:     rkt trust --prefix <image>",
        "fetch: openpgp: signature made by unknown entity",
    ]
