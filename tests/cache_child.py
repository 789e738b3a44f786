"""Run main.py's entry point in this process and print, at exit, what XLA compilation cost it:
`COMPILE {"compile_s": seconds in backend compilation (cache reads included), "hits": n}`.

    python tests/cache_child.py --config=... --workdir=... [main.py flags]
"""

import atexit
import json
import os
import sys

from absl import app
from jax import monitoring

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import main  # noqa: E402

TOTAL = {"compile_s": 0.0, "hits": 0}


def _on_duration(event, duration_secs, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration":
        TOTAL["compile_s"] += duration_secs


def _on_event(event, **kwargs):
    if event == "/jax/compilation_cache/cache_hits":
        TOTAL["hits"] += 1


if __name__ == "__main__":
    monitoring.register_event_duration_secs_listener(_on_duration)
    monitoring.register_event_listener(_on_event)
    atexit.register(lambda: print("COMPILE " + json.dumps(TOTAL), flush=True))
    app.run(main.main)
