"""``python -m support_desk``, run from the examples/ folder."""

from support_desk.main import main

main()
