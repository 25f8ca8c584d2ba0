"""The README's verification example accepts what passhouse signs, and nothing else."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from passhouse.webhooks.signing import new_secret, signature_header

README = Path(__file__).parents[2] / "README.md"


def _verify() -> Any:
    section = README.read_text().split("## Webhooks", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    namespace: dict[str, Any] = {}
    exec(code.group(1), namespace)  # noqa: S102 - our own README's example
    return namespace["verify"]


def test_the_readme_example_checks_signatures_and_the_replay_window() -> None:
    verify = _verify()
    secret, body = new_secret(), b'{"id":"evt_1","type":"ping","data":{}}'
    now = int(time.time())

    assert verify(secret, signature_header(secret, now, body), body)
    assert not verify(secret, signature_header(secret, now, body), body + b" ")
    assert not verify(new_secret(), signature_header(secret, now, body), body)
    assert not verify(secret, signature_header(secret, now - 301, body), body)
    assert not verify(secret, "v1=00", body)
