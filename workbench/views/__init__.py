"""Presentation: Panel/HoloViews views over pipeline outputs (the only layer that imports panel)."""
