"""``workbench bench``: a wrong argument is one line naming it, before any run starts."""

from __future__ import annotations

from conftest import cli


def test_bench_scale_refuses_an_unknown_detector_in_one_line():
    out = cli("bench", "scale", "--detector", "nosuch", "--events", "1000")
    assert out.returncode == 2, out.stderr
    [line] = out.stderr.strip().splitlines()  # no child's traceback
    assert "detector: unknown name 'nosuch'" in line and "context" in line
