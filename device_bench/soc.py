"""SoC marketing names from Android system properties.

Android 12+ reports `ro.soc.manufacturer` (e.g. ``QTI``) and `ro.soc.model` (e.g. ``SM8650``);
older builds only have `ro.board.platform` (a codename such as ``pineapple``). The table in
`data/soc_names.json` maps both to a marketing name (SM8650 → Snapdragon 8 Gen 3).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

_TABLE = Path(__file__).resolve().parent / "data" / "soc_names.json"
_VENDORS = {"QTI": "Qualcomm", "QCOM": "Qualcomm", "MEDIATEK": "MediaTek", "MTK": "MediaTek"}


@lru_cache(maxsize=1)
def _table() -> tuple[dict[str, str], dict[str, str]]:
    data = json.loads(_TABLE.read_text())
    return dict(data["by_model"]), dict(data["by_platform"])


def soc_part_number(soc_model: str = "", board_platform: str = "") -> str:
    """The SoC part number (``SM8650``) from `ro.soc.model`, else from the platform codename."""
    _by_model, by_platform = _table()
    model = soc_model.strip().upper()
    if model:
        return model
    return by_platform.get(board_platform.strip().lower(), "")


def soc_name(soc_manufacturer: str = "", soc_model: str = "", board_platform: str = "") -> str:
    """Marketing name of the SoC, or the best description available; ``"unknown"`` if none.

    >>> soc_name("QTI", "SM8650", "pineapple")
    'Snapdragon 8 Gen 3'
    >>> soc_name("", "", "kalama")
    'Snapdragon 8 Gen 2'
    """
    by_model, _ = _table()
    part = soc_part_number(soc_model, board_platform)
    if part in by_model:
        return by_model[part]
    vendor = _VENDORS.get(soc_manufacturer.strip().upper(), soc_manufacturer.strip())
    shown = soc_model.strip() or part or board_platform.strip()
    desc = " ".join(x for x in (vendor, shown) if x)
    return desc or "unknown"
