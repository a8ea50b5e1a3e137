"""``panel serve --setup`` script: start the shared live pipeline once, at server start."""

from workbench.apps.live import live_pipeline

live_pipeline()
