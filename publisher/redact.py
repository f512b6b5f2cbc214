"""Secrets masked out of text an operator sees, so an error message never carries a credential:
a URL's password (`user:***@`, with or without a scheme) and `password=` query parameters; for
URLs whose user name may itself be a key (a feed's `https://KEY@host/`), the whole userinfo."""

from __future__ import annotations

import re

MASK = "***"
_STOP = r"\s/@'\"<>"
_PASSWORD = re.compile(rf"(?P<user>(?:^|(?<=//)|(?<=[\s'\"(<]))[^{_STOP}:]*:)[^{_STOP}]*@")
_USERINFO = re.compile(rf"(?<=//)[^{_STOP}]+@")
_QUERY = re.compile(r"(?P<key>[?&;](?:password|passwd|pwd|pass|secret|token|api_key|apikey)=)[^&;#\s'\"]*", re.I)


def url(text: str) -> str:
    """`text` with every URL password replaced by ***; the user name, host and path left to read."""
    return _QUERY.sub(rf"\g<key>{MASK}", _PASSWORD.sub(rf"\g<user>{MASK}@", text))


def userinfo(text: str) -> str:
    """`text` with every URL's whole userinfo (and password parameters) replaced by ***."""
    return url(_USERINFO.sub(f"{MASK}@", text))
