"""A recipe task for the shard-stream resume tests: the multimodal task on ``data.shards``, whose loss also
appends every training batch's sample ids (one JSON line per step and rank) to ``$XMODAL_TEST_ID_LOG``."""

from __future__ import annotations

import json
import os
from typing import Any

from xmodal.tasks import multimodal
from xmodal.tasks.base import TaskBundle


def build(cfg: dict[str, Any]) -> TaskBundle:
    bundle = multimodal.build(cfg)
    inner = bundle.loss
    rank = os.environ.get("RANK", "0")

    def loss(outputs: dict[str, Any], batch: dict[str, Any]) -> Any:
        with open(f"{os.environ['XMODAL_TEST_ID_LOG']}.rank{rank}", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(list(batch["id"])) + "\n")
        return inner(outputs, batch)

    bundle.loss = loss
    return bundle
