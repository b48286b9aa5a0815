"""remote_app served by a worker whose wall clock is off by SKEWED_APP_SECONDS seconds."""

from __future__ import annotations

import os
import time

_real_time = time.time
_skew = float(os.environ.get("SKEWED_APP_SECONDS", "0"))
time.time = lambda: _real_time() + _skew

from remote_app import setup  # noqa: E402

__all__ = ["setup"]
