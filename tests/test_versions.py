"""The pinned dependency versions: constraints.txt pins every library results depend on, and a
run's manifest records the installed versions and which constraints file they came from."""

import hashlib
import re

from bayes_nqp.provenance import CONSTRAINTS, PACKAGES, versions


def pins() -> dict[str, str]:
    out = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)$", line.strip())
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def test_constraints_pin_every_library_the_manifest_records():
    pinned = pins()
    missing = [p for p in PACKAGES if p != "bayes-nqp" and p.lower() not in pinned]
    assert missing == []
    assert "bayes-nqp" not in pinned  # the package itself is installed editable, not pinned


def test_manifest_versions_name_the_constraints_file():
    v = versions()
    assert v["constraints_sha256"] == hashlib.sha256(CONSTRAINTS.read_bytes()).hexdigest()
    assert v["numpy"] and v["pymc"] and v["nutpie"]
