"""Chat panel Markdown while a long reply streams: whole re-render per delta vs MarkdownStream.

Baseline: ``markdown(text_so_far)`` on every delta, as the panel did (quadratic in the length).
Measured: ``MarkdownStream.feed(delta)``, which renders finished blocks once (linear).
Both get the same reply of PARAGRAPHS paragraphs, streamed word by word.

    python benchmarks/chat_render.py [--paragraphs 120]
"""

from __future__ import annotations

import argparse
import time

from llmgine.notebook.widgets._render import MarkdownStream, markdown


def reply(paragraphs: int) -> list[str]:
    text = "\n\n".join(
        f"Paragraph {i} has **bold** words, `code` and a [link](https://example.org/{i}) "
        "in a sentence long enough to look like a real answer from a model."
        for i in range(paragraphs)
    )
    return [word + " " for word in text.split(" ")]


def whole(deltas: list[str]) -> float:
    start, text = time.perf_counter(), ""
    for delta in deltas:
        text += delta
        markdown(text)
    return time.perf_counter() - start


def streamed(deltas: list[str]) -> float:
    start, stream = time.perf_counter(), MarkdownStream()
    for delta in deltas:
        stream.feed(delta)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paragraphs", type=int, default=120)
    args = parser.parse_args()
    for paragraphs in (args.paragraphs // 4, args.paragraphs):
        deltas = reply(paragraphs)
        baseline, measured = whole(deltas), streamed(deltas)
        print(
            f"{paragraphs:4d} paragraphs, {len(deltas):5d} deltas: whole re-render "
            f"{baseline:7.3f} s, MarkdownStream {measured:6.3f} s, "
            f"{baseline / measured:5.1f}x faster"
        )


if __name__ == "__main__":
    main()
