"""A gloo process group for tests that spawn ranks on CPU: a free local port, and the group's set-up and
tear-down around a worker's body."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

import torch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def gloo_group(rank: int, world_size: int, port: int) -> Iterator[None]:
    """This process as ``rank`` of a ``world_size`` gloo group on ``port``, one intra-op thread; destroyed on exit."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        torch.set_num_threads(1)
        yield
    finally:
        torch.distributed.destroy_process_group()
