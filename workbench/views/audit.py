"""``AuditView``: the newest records of the audit log, for admins (who did what, when, before → after)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import panel as pn
import param

from workbench.feeds.feed import Feed
from workbench.security.audit import AuditLog
from workbench.views.base import LiveView

__all__ = ["AuditView"]

_COLUMNS = ["seq", "at", "who", "role", "action", "what", "outcome", "before", "after", "client", "detail"]


class AuditView(LiveView):
    """The audit log's newest ``rows`` records, newest first; re-read only when the file grew."""

    rows = param.Integer(default=200, bounds=(10, 5000), doc="Records shown, the newest.")

    def __init__(self, feed: Feed, audit: AuditLog, **params: Any) -> None:
        super().__init__(feed, **params)
        self.audit = audit
        self._size = -1
        self.table = pn.widgets.Tabulator(
            pd.DataFrame(columns=_COLUMNS),
            disabled=True,
            show_index=False,
            sizing_mode="stretch_width",
            theme="simple",
            height=360,
            layout="fit_data_fill",
        )

    def _build(self) -> Any:
        return pn.Column(self.table, sizing_mode="stretch_width")

    def refresh(self) -> None:
        """Re-read the newest records when the log changed."""
        size = self.audit.path.stat().st_size if self.audit.path.exists() else 0
        if size == self._size:
            return
        self._size = size
        records = list(reversed(self.audit.read(last=self.rows)))
        frame = pd.DataFrame([{k: r.get(k) for k in _COLUMNS} for r in records], columns=_COLUMNS)
        for col in ("before", "after"):
            frame[col] = frame[col].map(lambda v: "" if v is None else str(v))
        self.table.value = frame
