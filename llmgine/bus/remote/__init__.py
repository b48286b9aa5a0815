"""Several processes, one bus: the bus over Redis Streams (needs ``llmgine[redis]``).

``await bus.connect(url)`` joins a shared bus; ``python -m llmgine worker MODULE:FUNCTION
--redis URL`` runs a process that serves handlers on it. Importing this package
imports ``redis``; ``import llmgine`` does not.
"""

try:
    import redis  # noqa: F401  (this package's one dependency beyond llmgine)
except ImportError as exc:
    raise ModuleNotFoundError(
        "llmgine.bus.remote needs the redis package: pip install 'llmgine[redis]'.", name="redis"
    ) from exc

from llmgine.bus.remote.link import RedisLink
from llmgine.bus.remote.server import RedisServer, redis_server_binary

__all__ = ["RedisLink", "RedisServer", "redis_server_binary"]
