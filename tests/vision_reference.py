"""Loads the reference implementations (torch-fidelity, pytorch-fid, OpenAI CLIP from clip-anytorch) that the
vision tests compare against.

Their package ``__init__`` files import torchvision, which does not import beside this torch. The modules we
compare against do not need it, so we either import a submodule with its package ``__init__`` skipped, or take
the named top-level functions out of a module's source and execute exactly that code. Nothing is transcribed.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import pytest


def package_dir(package: str) -> Path:
    loaded = sys.modules.get(package)
    if loaded is not None and getattr(loaded, "__path__", None):
        return Path(list(loaded.__path__)[0])
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"reference package {package} is not installed (it is in the test extra)")
    return Path(list(spec.submodule_search_locations)[0])


def import_submodule(package: str, submodule: str) -> types.ModuleType:
    """Import ``package.submodule`` without running ``package/__init__.py``."""
    pdir = package_dir(package)
    pkg = sys.modules.get(package)
    if pkg is None or getattr(pkg, "__path__", None) is None:
        pkg = types.ModuleType(package)
        pkg.__path__ = [str(pdir)]
        sys.modules[package] = pkg
    return importlib.import_module(f"{package}.{submodule}")


def load_functions(package: str, relpath: str, names: list[str], namespace: dict[str, Any]) -> dict[str, Any]:
    """Execute only the top-level definitions ``names`` of ``package/relpath`` in ``namespace``."""
    source = (package_dir(package) / relpath).read_text()
    tree = ast.parse(source)
    keep = [n for n in tree.body
            if isinstance(n, (ast.FunctionDef, ast.Assign)) and
            (getattr(n, "name", None) in names or
             (isinstance(n, ast.Assign) and any(getattr(t, "id", None) in names for t in n.targets)))]
    missing = set(names) - {getattr(n, "name", None) for n in keep} - {
        t.id for n in keep if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    assert not missing, f"{relpath} no longer defines {missing}"
    code = compile(ast.Module(body=keep, type_ignores=[]), str(package_dir(package) / relpath), "exec")
    exec(code, namespace)
    return namespace


def torch_fidelity_metrics() -> dict[str, Any]:
    """torch-fidelity's isc_features_to_metric, fid_features_to_statistics, fid_statistics_to_metric and
    kid_features_to_metric, as shipped."""
    import numpy as np
    import torch
    from tqdm import tqdm

    helpers = import_submodule("torch_fidelity", "helpers")
    ns: dict[str, Any] = {"np": np, "torch": torch, "tqdm": tqdm, "get_kwarg": helpers.get_kwarg,
                          "vassert": helpers.vassert, "vprint": helpers.vprint}
    load_functions("torch_fidelity", "metric_isc.py",
                   ["KEY_METRIC_ISC_MEAN", "KEY_METRIC_ISC_STD", "isc_features_to_metric"], ns)
    load_functions("torch_fidelity", "metric_fid.py",
                   ["KEY_METRIC_FID", "fid_features_to_statistics", "fid_statistics_to_metric"], ns)
    load_functions("torch_fidelity", "metric_kid.py",
                   ["KEY_METRIC_KID_MEAN", "KEY_METRIC_KID_STD", "mmd2", "kernel_poly", "kernel_rbf",
                    "kernel_mmd", "kid_features_to_metric"], ns)
    return ns


def pytorch_fid_frechet():
    """pytorch-fid's calculate_frechet_distance (scipy sqrtm route), as shipped."""
    import numpy as np
    from scipy import linalg

    ns: dict[str, Any] = {"np": np, "linalg": linalg}
    load_functions("pytorch_fid", "fid_score.py", ["calculate_frechet_distance"], ns)
    return ns["calculate_frechet_distance"]
