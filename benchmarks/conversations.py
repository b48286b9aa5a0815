"""Conversation stores: a turn with SQLite against the in-memory store, and storage per turn.

Turn rate: ``await bus.execute(PromptCommand(...))`` on the offline model through an
``LLMEngine`` with ``conversations="sqlite:///..."`` against the same engine with the default
in-memory store, in the same run, each on a bus writing the JSONL log as ``MessageBus()``
does by default (``--no-log``: without it). The two alternate in blocks of ``--turns`` turns of one
conversation each (a new conversation per block, ``max_history`` 100, so requests carry up
to 100 messages); the median of the per-block ratios is reported, of wall-clock rates and
of rates per second of this process's CPU time (which leaves out other processes' load).
The SQLite store serves a turn's load from its memory on the event loop while the file's
change stamp says no one wrote the file since (here: always, one engine on the file), and
appends the turn in one transaction in the engine's store thread, before the prompt
returns: one thread hop per turn. A third engine keeps its conversations in memory but
through two thread hops (a store marked ``blocking``, without ``load_fresh``, loads and
saves in the store thread): what two hops cost by themselves. A hop waits for the system
to run the store's thread and for the GIL: on a machine busy with other processes (load
average above its CPU count, printed before and after) it costs milliseconds instead of
tens of microseconds, and the SQLite ratio falls with it.

Interleaved (``--blocks``): the memory and SQLite engines alternate in blocks of 10 turns
of one conversation each, whose history is full (100 messages) from the start; per round,
the ratio of their total times. Both meet the same moments of a busy machine, so this
ratio moves less from run to run than the one of 200-turn blocks. It is measured twice:
with the JSONL log on (``MessageBus()``'s default, what a user has: the headline figure)
and with ``log_dir=None`` (the store's cost against the least work a turn can do).

Store calls: the SQLite store's ``load_fresh`` (on the loop), ``load`` (in the thread, when
another process wrote) and ``append_turn`` called directly, per turn (what a turn costs
besides its thread hop).

Floors (``--floors``): the same interleaved blocks with two stores that save each turn
in the store thread as the SQLite store does, and do less: ``OneHopMemoryStore`` (the
in-memory store, whose save only leaves the loop: the thread hop alone) and
``LeastWriteStore`` (that, plus one SQLite transaction inserting the turn's messages, the
least a durable turn writes). What they reach bounds what any store saving off the loop
can reach on this machine.

Storage: the SQLite file's size (after a WAL checkpoint) every 250 turns up to
``--storage-turns`` turns of one conversation; linear means the same bytes per turn at
every point (no full-history rewrite per turn).

    python benchmarks/conversations.py [--turns 200] [--rounds 5] [--storage-turns 1000]
                                       [--blocks 60] [--no-log] [--floors]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from llmgine.bus import MessageBus
from llmgine.llm import ChatMessage, LLMEngine, MemoryConversationStore, PromptCommand
from llmgine.llm.conversations import ConversationSetting, StoredConversation

PROMPT = "Summarize the benefits of an event bus for LLM applications in one line."


def quiet_bus(log_dir: Path | None) -> MessageBus:
    return MessageBus(
        log_dir=log_dir,
        log_filename="conversations.jsonl",
        enable_console_metrics=False,
        enable_console_traces=False,
    )


async def turns_per_second(
    bus: MessageBus, conversation_id: str, turns: int
) -> tuple[float, float]:
    """Turns per second of wall-clock time, and per second of this process's CPU time."""
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(turns):
        command = PromptCommand(prompt=f"{PROMPT} ({i})", conversation_id=conversation_id)
        result = await bus.execute(command)
        assert result.success, result.error
    await bus.wait_for_events()
    return turns / (time.perf_counter() - start), turns / (time.process_time() - cpu)


class HoppingMemoryStore(MemoryConversationStore):
    """The in-memory store, called in a thread like a store that does I/O."""

    blocking = True


async def rates(turns: int, rounds: int, tmp: Path, log: bool) -> None:
    log_dir = tmp / "logs" if log else None
    memory_bus, sqlite_bus, hopping_bus = quiet_bus(log_dir), quiet_bus(log_dir), quiet_bus(log_dir)
    LLMEngine(memory_bus, model="offline")
    LLMEngine(sqlite_bus, model="offline", conversations=f"sqlite:///{tmp / 'rate.db'}")
    LLMEngine(hopping_bus, model="offline", conversations=HoppingMemoryStore(100))
    memory_rates, sqlite_rates, hopping_rates, ratios, cpu_ratios = [], [], [], [], []
    async with memory_bus, sqlite_bus, hopping_bus:
        for round_ in range(rounds + 1):  # round 0 warms both up, unmeasured
            memory, memory_cpu = await turns_per_second(memory_bus, f"m{round_}", turns)
            sqlite, sqlite_cpu = await turns_per_second(sqlite_bus, f"s{round_}", turns)
            hopping, _ = await turns_per_second(hopping_bus, f"h{round_}", turns)
            if round_ == 0:
                continue
            memory_rates.append(memory)
            sqlite_rates.append(sqlite)
            hopping_rates.append(hopping)
            ratios.append(sqlite / memory)
            cpu_ratios.append(sqlite_cpu / memory_cpu)
            print(
                f"round {round_}: in memory {memory:,.0f} turns/s  SQLite {sqlite:,.0f} turns/s "
                f"({sqlite / memory:.2f}x; per CPU second {sqlite_cpu / memory_cpu:.2f}x)  "
                f"in memory through two thread hops {hopping:,.0f} turns/s"
            )
    print()
    print(f"in-memory store: {statistics.median(memory_rates):,.0f} turns/s (median)")
    print(
        f"SQLite store: {statistics.median(sqlite_rates):,.0f} turns/s (median); "
        f"median ratio {statistics.median(ratios):.2f}x the in-memory store (target >= 0.8x)"
    )
    print(
        f"per second of this process's CPU time (other processes' load left out): median ratio "
        f"{statistics.median(cpu_ratios):.2f}x"
    )
    hops = 1 / statistics.median(hopping_rates) - 1 / statistics.median(memory_rates)
    print(f"the two thread hops alone (in memory, run in threads): {hops * 1e6:,.0f} us per turn")


async def interleaved(
    blocks: int, rounds: int, tmp: Path, log: bool, store: ConversationSetting, name: str
) -> float:
    """The in-memory engine and one with ``store`` in blocks of 10 turns, alternating.

    Both run once their histories are full, and both see the same moments of the
    machine: other processes' load weighs on both alike. Returns the median ratio.
    """
    log_dir = tmp / "logs" if log else None
    memory_bus, store_bus = quiet_bus(log_dir), quiet_bus(log_dir)
    LLMEngine(memory_bus, model="offline")
    LLMEngine(store_bus, model="offline", conversations=store)
    how = f"{name}, JSONL log on (the default bus)" if log else f"{name}, log_dir=None"
    ratios, cpu_ratios = [], []
    async with memory_bus, store_bus:
        for bus in (memory_bus, store_bus):  # 60 turns: max_history's 100 messages are full
            await turns_per_second(bus, "steady", 60)
        for round_ in range(1, rounds + 1):
            seconds = {memory_bus: 0.0, store_bus: 0.0}
            cpu_seconds = {memory_bus: 0.0, store_bus: 0.0}
            for _ in range(blocks):
                for bus in (memory_bus, store_bus):
                    rate, cpu_rate = await turns_per_second(bus, "steady", 10)
                    seconds[bus] += 10 / rate
                    cpu_seconds[bus] += 10 / cpu_rate
            ratios.append(seconds[memory_bus] / seconds[store_bus])
            cpu_ratios.append(cpu_seconds[memory_bus] / cpu_seconds[store_bus])
            turns = 10 * blocks
            print(
                f"interleaved, {how}, round {round_}: in memory "
                f"{turns / seconds[memory_bus]:,.0f} turns/s  {name} "
                f"{turns / seconds[store_bus]:,.0f} turns/s ({ratios[-1]:.2f}x; "
                f"per CPU second {cpu_ratios[-1]:.2f}x)"
            )
    print(
        f"interleaved, {how}, {blocks} blocks of 10 turns each: median ratio "
        f"{statistics.median(ratios):.2f}x (per CPU second {statistics.median(cpu_ratios):.2f}x)"
    )
    return statistics.median(ratios)


class OneHopMemoryStore(MemoryConversationStore):
    """The in-memory store, saving each turn in the store thread: one thread hop a turn.

    What the SQLite store's turn would cost if its write took no time at all: a turn's
    load is served on the loop (as the SQLite store's ``load_fresh`` does), its save
    leaves the loop, as a store doing I/O must.
    """

    blocking = True

    def load_fresh(
        self, conversation_id: str, last_messages: int | None
    ) -> StoredConversation | None:
        return self.load(conversation_id, last_messages)


class LeastWriteStore(OneHopMemoryStore):
    """:class:`OneHopMemoryStore` plus the least SQLite write a durable turn needs.

    One transaction inserting the turn's messages (``BEGIN IMMEDIATE``, the rows, ``COMMIT``,
    WAL, ``synchronous=NORMAL``), without the SQLite store's change stamp, token counts
    and conversation row: a floor under any SQLite store that saves a turn off the loop.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(100)
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._seq = 0

    def append_turn(
        self, conversation_id: str, messages: Sequence[ChatMessage], system_prompt: str | None
    ) -> int:
        if self._db is None:  # opened in the store thread, which makes every write
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS m (seq INTEGER PRIMARY KEY, body TEXT)")
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany(
            "INSERT INTO m VALUES (?, ?)",
            [(self._seq + i, m.model_dump_json()) for i, m in enumerate(messages)],
        )
        self._db.execute("COMMIT")
        self._seq += len(messages)
        return super().append_turn(conversation_id, messages, system_prompt)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def store_calls(turns: int, tmp: Path) -> None:
    """The SQLite store's own cost per turn: its two calls, without a thread hop or an engine."""
    from llmgine.llm import SQLiteConversationStore

    store = SQLiteConversationStore(tmp / "calls.db")
    messages = [
        ChatMessage(role="user", content=PROMPT),
        ChatMessage(role="assistant", content=PROMPT * 3),
    ]
    fresh, loads, appends = [], [], []
    for _ in range(turns):
        start = time.perf_counter()
        if store.load_fresh("calls", 100) is None:
            store.load("calls", 100)
        fresh.append(time.perf_counter() - start)
        start = time.perf_counter()
        store.load("calls", 100)
        loads.append(time.perf_counter() - start)
        start = time.perf_counter()
        store.append_turn("calls", messages, None)
        appends.append(time.perf_counter() - start)
    store.close()
    print()
    print(
        f"SQLite store calls alone: load_fresh {statistics.median(fresh) * 1e6:,.0f} us (on "
        f"the loop; load from the file {statistics.median(loads) * 1e6:,.0f} us) + append "
        f"{statistics.median(appends) * 1e6:,.0f} us per turn (medians, no thread hop)"
    )


async def storage(turns: int, tmp: Path) -> None:
    path = tmp / "storage.db"
    bus = quiet_bus(None)
    LLMEngine(bus, model="offline", conversations=f"sqlite:///{path}")
    sizes: dict[int, int] = {}
    async with bus:
        for turn in range(1, turns + 1):
            result = await bus.execute(PromptCommand(prompt=f"{PROMPT} ({turn})"))
            assert result.success, result.error
            if turn % 250 == 0:
                with sqlite3.connect(path) as db:
                    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                sizes[turn] = path.stat().st_size
    print()
    previous_turn, previous_size = 0, 0
    for turn, size in sizes.items():
        per_turn = (size - previous_size) / (turn - previous_turn)
        print(
            f"after {turn:>5} turns: {size / 1024:,.0f} KiB ({per_turn:,.0f} bytes per turn since)"
        )
        previous_turn, previous_size = turn, size
    last = max(sizes)
    print(
        f"storage after {last} turns: {sizes[last] / 1024:,.0f} KiB, "
        f"{sizes[last] / last:,.0f} bytes per turn"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200, help="turns per block")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--storage-turns", type=int, default=1000)
    parser.add_argument(
        "--blocks", type=int, default=60, help="interleaved blocks of 10 turns per round (0: none)"
    )
    parser.add_argument(
        "--no-log", action="store_true", help="the 200-turn blocks without the JSONL log"
    )
    parser.add_argument(
        "--floors",
        action="store_true",
        help="also the floors: one thread hop a turn without a write, and with the least write",
    )
    args = parser.parse_args()
    if args.floors and not args.blocks:
        parser.error("--floors runs in interleaved blocks: give --blocks N (N > 0)")
    print(f"load average before: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(rates(args.turns, args.rounds, Path(tmp), not args.no_log))
        if args.blocks:
            print()
            ratios = []
            for log in (True, False):
                database = f"sqlite:///{Path(tmp) / f'blocks-{log}.db'}"
                blocks = interleaved(args.blocks, args.rounds, Path(tmp), log, database, "SQLite")
                ratios.append(asyncio.run(blocks))
                print()
            with_log, without = ratios
            print(
                f"SQLite turn rate against the in-memory one: {with_log:.2f}x with the JSONL "
                f"log on, as MessageBus() has it (target >= 0.8x); {without:.2f}x with "
                "log_dir=None"
            )
        if args.floors:
            print()
            hop = asyncio.run(
                interleaved(
                    args.blocks, args.rounds, Path(tmp), True, OneHopMemoryStore(100),
                    "one hop, no write",
                )
            )  # fmt: skip
            print()
            least = asyncio.run(
                interleaved(
                    args.blocks, args.rounds, Path(tmp), True,
                    LeastWriteStore(Path(tmp) / "least.db"), "one hop, least write",
                )
            )  # fmt: skip
            print()
            print(
                f"floors of a store that saves a turn off the loop (JSONL log on): the thread "
                f"hop alone {hop:.2f}x the in-memory turn; with the least SQLite write of a "
                f"turn {least:.2f}x"
            )
        print(f"load average after the rates: {os.getloadavg()[0]:.1f}")
        store_calls(args.turns * args.rounds, Path(tmp))
        asyncio.run(storage(args.storage_turns, Path(tmp)))


if __name__ == "__main__":
    main()
