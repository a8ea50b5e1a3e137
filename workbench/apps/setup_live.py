"""``panel serve --setup`` script: start the shared live pipeline once, at server start.

It also freezes the objects loaded at start-up out of garbage collection and trims
the heap every 30 s, so memory freed when sessions end goes back to
the OS instead of staying in the allocator (see ``workbench.apps.serve.server_env``).
"""

import gc

import panel as pn

from workbench.apps.live import live_pipeline
from workbench.apps.routes import trim

live_pipeline()
pn.state.schedule_task("workbench.trim", trim, period="30s")
# everything loaded so far lives as long as the server: keep it out of the collector's
# full passes, which otherwise pause the pipeline and every session together
gc.collect()
gc.freeze()
