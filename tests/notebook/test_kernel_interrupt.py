"""A kernel interrupt while an event handler runs leaves the bus working (a real kernel)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import start_new_kernel

SETUP = """
%load_ext llmgine
%llmgine start --log-file kernel.jsonl --quiet
from pathlib import Path
from llmgine import Event, EventHandlerFailedEvent
from llmgine.notebook import get_bus

class SpinEvent(Event):
    pass

class PingEvent(Event):
    n: int

bus = get_bus()
pings, failures = [], []

def spin(event):
    Path("spinning").write_text("yes")
    while True:  # a runaway handler: only an interrupt ends it
        pass

bus.register_event_handler(SpinEvent, spin)
bus.register_event_handler(PingEvent, lambda e: pings.append(e.n))
bus.register_event_handler(EventHandlerFailedEvent, lambda e: failures.append(e.error_type))
"""

# A sync cell that runs the kernel's loop (through the magic): SIGINT lands in the handler.
SPIN = "%llmgine publish SpinEvent()"

CHECK = """
%llmgine publish PingEvent(n=7)
print(pings, failures, bus.is_running, bus.stats.handler_failures)
"""


def execute(client: Any, code: str, timeout: float = 60) -> tuple[str, str]:
    """Run ``code``; return (status, printed text)."""
    msg_id = client.execute(code)
    printed = []
    while True:
        msg = client.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            printed.append(msg["content"]["text"])
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    reply = client.get_shell_msg(timeout=timeout)
    return reply["content"]["status"], "".join(printed)


@pytest.mark.timeout(180)
def test_interrupting_a_runaway_handler_keeps_the_bus_alive(tmp_path: Path) -> None:
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        status, _ = execute(client, SETUP)
        assert status == "ok"
        msg_id = client.execute(SPIN)
        deadline = time.monotonic() + 60
        while not (tmp_path / "spinning").exists():  # the kernel, not the bus: poll a file
            assert time.monotonic() < deadline, "the handler never started"
            time.sleep(0.05)
        manager.interrupt_kernel()
        while True:
            reply = client.get_shell_msg(timeout=60)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        status, printed = execute(client, CHECK)
        assert status == "ok", printed
        assert printed.strip() == "[7] ['KeyboardInterrupt'] True 1"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
