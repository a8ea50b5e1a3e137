"""``panel serve --setup`` script: start the shared live pipeline once, at server start.

It also freezes the objects loaded at start-up out of garbage collection and, every
10 s, frees sessions left with only dead connections and trims the heap, so memory freed when sessions end goes back to
the OS instead of staying in the allocator (see ``workbench.apps.serve.server_env``).
"""

import gc

import panel as pn

from workbench.apps.access import install
from workbench.apps.live import live_pipeline
from workbench.apps.routes import housekeeping

install()  # the serving policy (Host check, headers, rate limits, no request data in tokens)
live_pipeline()
pn.state.schedule_task("workbench.housekeeping", housekeeping, period="10s")
# everything loaded so far lives as long as the server: keep it out of the collector's
# full passes, which otherwise pause the pipeline and every session together
gc.collect()
gc.freeze()
