"""`/`: the status page, one self-contained HTML file (`status.html`) that polls `/api/status`.

The page has no external resources (no CDN, fonts or images beyond inline SVG), so it works
offline and on a phone on the local network. Its inline script is allowed by a
Content-Security-Policy hash computed here, so nothing else can run in it.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True, slots=True)
class Page:
    body: bytes
    content_security_policy: str


@cache
def status_page() -> Page:
    body = resources.files("recorder.live").joinpath("status.html").read_bytes()
    scripts = re.findall(rb"<script>(.*?)</script>", body, re.DOTALL)
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'" for script in scripts
    )
    policy = (
        f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return Page(body, policy)
