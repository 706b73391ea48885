"""The feature cache of the generation metrics: :class:`xmodal.transforms.cache.TransformCache`, the one
content-hashed cache shared by every task, with the key these metrics have always built.

The key hashes (1) every file's relative name and bytes, (2) the extractor's name and a fingerprint of its
weights, (3) the preprocessing/protocol options.
"""

from __future__ import annotations

from typing import Any

from xmodal.transforms.cache import (
    TransformCache,
    default_cache_dir,
    files_digest,
    make_key,
    model_fingerprint,
)

__all__ = ["FeatureCache", "default_cache_dir", "files_digest", "model_fingerprint"]


class FeatureCache(TransformCache):
    """``get``/``put`` dictionaries of tensors under a key built from files, extractor and options."""

    @staticmethod
    def key(files_sha: str, extractor: str, options: dict[str, Any]) -> str:
        return make_key(files_sha, extractor, options)
