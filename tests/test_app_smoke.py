"""Smoke test: `workbench serve` serves the live monitor at /monitor."""

from __future__ import annotations

import urllib.request

import pytest


@pytest.mark.slow
def test_serve_answers_monitor_page(served_monitor):
    with urllib.request.urlopen(served_monitor, timeout=30) as r:
        assert r.status == 200
        body = r.read().decode()
    assert "Workbench" in body
    assert "bokeh" in body.lower()
