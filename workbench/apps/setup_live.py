"""``panel serve --setup`` script: start the shared live pipeline once, at server start.

It also trims the heap every 30 s, so memory freed when sessions end goes back to
the OS instead of staying in the allocator (see ``workbench.apps.serve.server_env``).
"""

import panel as pn

from workbench.apps.live import live_pipeline
from workbench.apps.routes import trim

live_pipeline()
pn.state.schedule_task("workbench.trim", trim, period="30s")
