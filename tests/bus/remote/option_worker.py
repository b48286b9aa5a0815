"""A worker with any ``bus.connect()`` options: ``option_worker.py SPEC URL NS LOG_DIR JSON``."""

from __future__ import annotations

import asyncio
import json
import logging
import sys

from llmgine.bus.remote.worker import READY, run_worker


def main() -> None:
    spec, url, namespace, log_dir, options = sys.argv[1:6]
    logging.basicConfig(level=logging.INFO)
    asyncio.run(
        run_worker(
            spec,
            url,
            namespace=namespace,
            log_dir=log_dir,
            options=json.loads(options),
            ready=lambda bus: print(READY, flush=True),
        )
    )


if __name__ == "__main__":
    main()
