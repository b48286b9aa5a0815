"""Configuration: read once, from the environment, with offline defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    """Settings of the support desk."""

    model: str = "offline"
    log_dir: str | None = "logs"

    @classmethod
    def from_env(cls) -> Config:
        """``SUPPORT_DESK_MODEL`` and ``SUPPORT_DESK_LOG_DIR`` override the defaults."""
        return cls(
            model=os.environ.get("SUPPORT_DESK_MODEL", cls.model),
            log_dir=os.environ.get("SUPPORT_DESK_LOG_DIR", cls.log_dir),
        )
