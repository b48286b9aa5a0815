"""Several processes, one bus: the bus over Redis Streams (needs ``llmgine[redis]``).

``await bus.connect(url)`` joins a shared bus; ``python -m llmgine worker MODULE:FUNCTION
--redis URL`` runs a process that serves handlers on it. Importing this package
imports ``redis``; ``import llmgine`` does not.
"""

from llmgine.bus.remote.link import RedisLink
from llmgine.bus.remote.server import RedisServer, redis_server_binary

__all__ = ["RedisLink", "RedisServer", "redis_server_binary"]
