"""The one masking function: secrets out of every message, log line and shown URL.

:func:`mask` replaces with ``***``:

* the password of a URL's user info (``scheme://user:password@host``),
* the value of a query or ``key=value`` parameter whose name says secret
  (``token``, ``password``, ``passwd``, ``pwd``, ``secret``, ``key``, ``auth``,
  ``signature``, ``credential`` in it: ``?token=…``, ``&api_key=…``, a libpq
  ``password=…``),
* the value of a credential header, written ``Name: value`` or as a mapping entry
  (``Authorization``, ``Proxy-Authorization``, ``Cookie``, ``Set-Cookie``, ``X-Api-Key``,
  ``Api-Key`` and any ``X-…`` header whose name holds ``token``, ``secret``, ``key`` or ``auth``).

:class:`MaskingFilter` applies it to log records and :func:`mask_logs` to every
record the process creates (the ``workbench`` command calls it, and masks every error
line it prints).

Examples
--------
>>> mask("mqtt://user:s3cret@127.0.0.1:1883/plant/#")
'mqtt://user:***@127.0.0.1:1883/plant/#'
>>> mask("POST https://hooks.example/x?channel=ops&token=abc123 failed")
'POST https://hooks.example/x?channel=ops&token=*** failed'
>>> mask("host=db user=wb password=hunter2 dbname=x")
'host=db user=wb password=*** dbname=x'
>>> mask("{'Authorization': 'Bearer eyJhbGc', 'Content-Type': 'application/json'}")
"{'Authorization': '***', 'Content-Type': 'application/json'}"
>>> mask("X-Api-Key: 12345")
'X-Api-Key: ***'
"""

from __future__ import annotations

import logging
import re

__all__ = ["MaskingFilter", "mask", "mask_logs"]

_SECRET_WORDS = r"token|passw(?:or)?d|pwd|secret|key|auth|signature|credential"
_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:@/?#]*):[^\s@/]+@")
_PARAM = re.compile(rf"((?:^|(?<=[\s?&;,(\"']))[\w.-]*(?:{_SECRET_WORDS})[\w.-]*=)[^\s&#;,'\")]+", re.IGNORECASE)
_HEADER_NAMES = r"(?:proxy-)?authorization|set-cookie|cookie|api-key|x-[\w-]*(?:token|secret|key|auth)[\w-]*"
_HEADER_LINE = re.compile(rf"((?:^|(?<=[\s,;]))(?:{_HEADER_NAMES})\s*:\s*)(?!\s*['\"])[^\r\n,;]+", re.IGNORECASE)
_HEADER_ITEM = re.compile(rf"(['\"](?:{_HEADER_NAMES})['\"]\s*:\s*['\"])[^'\"]*(['\"])", re.IGNORECASE)


def mask(text: str) -> str:
    """``text`` with every password, token and credential header value replaced by ``***``."""
    text = _USERINFO.sub(r"\1:***@", text)
    text = _HEADER_ITEM.sub(r"\1***\2", text)
    text = _HEADER_LINE.sub(r"\1***", text)
    return _PARAM.sub(r"\1***", text)


class MaskingFilter(logging.Filter):
    """A logging filter that masks secrets in every record's message (arguments merged first).

    Examples
    --------
    >>> record = logging.LogRecord("x", logging.WARNING, __file__, 1, "fetch %s", ("http://u:pw@h/",), None)
    >>> MaskingFilter().filter(record), record.getMessage()
    (True, 'fetch http://u:***@h/')
    """

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: D102
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def mask_logs() -> None:
    """Mask every log record this process creates from now on (idempotent)."""
    old = logging.getLogRecordFactory()
    if getattr(old, "_workbench_masking", False):
        return
    masking = MaskingFilter()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = old(*args, **kwargs)
        masking.filter(record)
        return record

    factory._workbench_masking = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
