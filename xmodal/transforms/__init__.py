"""Per-modality transforms: one place that turns a file or value into the tensor an encoder expects.

``transform_for(spec, **params)`` returns the default transform of a modality (or the one named by
``transform=``); expensive ones are cached on disk by :class:`TransformCache` under a key hashing the file's
bytes, the transform's name, parameters and weights.
"""

from xmodal.transforms.base import (
    Transform,
    build_transforms,
    default_transform_name,
    describe_transforms,
    list_transforms,
    register_transform,
    restore_transforms,
    transform_for,
)
from xmodal.transforms.cache import TransformCache, default_cache_dir, file_digest, make_key
from xmodal.transforms.graph import collate_graphs

__all__ = [
    "Transform",
    "TransformCache",
    "build_transforms",
    "collate_graphs",
    "default_cache_dir",
    "default_transform_name",
    "describe_transforms",
    "file_digest",
    "list_transforms",
    "make_key",
    "register_transform",
    "restore_transforms",
    "transform_for",
]
