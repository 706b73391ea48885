"""``xmodal eval images``, ``xmodal eval videos`` and ``xmodal eval clipscore``: generation metrics on files,
printed as JSON. Networks load from local weights (``--weights`` file or directory, or ``$XMODAL_WEIGHTS``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from xmodal.cli._options import metric_list, write_json
from xmodal.cli.eval import eval_app


def _emit(result: dict, out: Optional[Path]) -> None:
    typer.echo(write_json(result, out))


@eval_app.command("images")
def eval_images(
    fake: Path = typer.Option(..., "--fake", help="Folder of generated images."),
    real: Optional[Path] = typer.Option(None, "--real", help="Folder of real images (FID, KID)."),
    metrics: str = typer.Option("fid,is,kid", "--metrics", help="Comma-separated: fid, is, kid."),
    weights: Optional[Path] = typer.Option(None, "--weights",
                                           help="pt_inception-2015-12-05-6726825d.pth or its folder."),
    batch_size: int = typer.Option(32, "--batch-size"),
    is_splits: int = typer.Option(10, "--is-splits"),
    kid_subsets: int = typer.Option(100, "--kid-subsets"),
    kid_subset_size: int = typer.Option(1000, "--kid-subset-size"),
    no_checksum: bool = typer.Option(False, "--no-checksum", help="Skip the sha256 check (re-saved weights)."),
    device: str = typer.Option("cpu", "--device"),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the feature cache."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir"),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the JSON here."),
) -> None:
    """FID, KID and Inception Score of image folders (torch-fidelity's protocol, FID Inception 2015-12-05)."""
    from xmodal.metrics.generation.cache import FeatureCache
    from xmodal.metrics.generation.images import image_metrics
    from xmodal.pretrained.inception_fid import fid_inception_v3

    names = [m.lower() for m in metric_list(metrics)]
    model = fid_inception_v3(weights, check=not no_checksum)
    result = image_metrics(real, fake, names, model, batch_size=batch_size,
                           cache=FeatureCache(cache_dir, enabled=not no_cache), is_splits=is_splits,
                           kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, device=device)
    _emit(result, out)


@eval_app.command("videos")
def eval_videos(
    real: Path = typer.Option(..., "--real", help="Folder of real videos."),
    fake: Path = typer.Option(..., "--fake", help="Folder of generated videos."),
    metrics: str = typer.Option("fvd", "--metrics", help="Only fvd for now."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="I3D weights (rgb_imagenet.pt layout) or folder."),
    clip_length: int = typer.Option(16, "--clip-length", help="Consecutive frames per clip (StyleGAN-V: 16)."),
    max_clips: int = typer.Option(2048, "--max-clips", help="Videos used per side (StyleGAN-V: 2048)."),
    offset: int = typer.Option(0, "--offset", help="First frame of each clip."),
    unbiased: bool = typer.Option(False, "--unbiased", help="Unbiased covariance (TF-GAN) instead of StyleGAN-V's."),
    no_checksum: bool = typer.Option(False, "--no-checksum"),
    device: str = typer.Option("cpu", "--device"),
    no_cache: bool = typer.Option(False, "--no-cache"),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir"),
    out: Optional[Path] = typer.Option(None, "--out"),
) -> None:
    """FVD of video folders (StyleGAN-V protocol by default; the protocol is printed with the value)."""
    from xmodal.errors import MetricInputError
    from xmodal.metrics.generation.cache import FeatureCache
    from xmodal.metrics.generation.videos import fvd_folders
    from xmodal.pretrained.i3d import i3d

    names = [m.lower() for m in metric_list(metrics)]
    if names != ["fvd"]:
        raise MetricInputError(f"unknown video metrics {names}; choose fvd", source="--metrics")
    model = i3d(weights, check=not no_checksum)
    result = fvd_folders(real, fake, model, clip_length, max_clips, offset, unbiased,
                         FeatureCache(cache_dir, enabled=not no_cache), device)
    _emit(result, out)


@eval_app.command("clipscore")
def eval_clipscore(
    images: Path = typer.Option(..., "--images", help="Folder of images; file stems are the ids."),
    candidates: Path = typer.Option(..., "--candidates", help="JSON {image id: caption}."),
    references: Optional[Path] = typer.Option(None, "--references", help="JSON {image id: [captions]}."),
    weights: Optional[Path] = typer.Option(None, "--weights",
                                           help="Folder with ViT-B-32.pt and bpe_simple_vocab_16e6.txt.gz."),
    no_checksum: bool = typer.Option(False, "--no-checksum"),
    out: Optional[Path] = typer.Option(None, "--out"),
) -> None:
    """CLIPScore and RefCLIPScore (Hessel et al. 2021) with CLIP ViT-B/32."""
    from PIL import Image

    from xmodal.config.loaders import read_json
    from xmodal.errors import MetricInputError
    from xmodal.metrics.generation.clip_scores import clip_score
    from xmodal.metrics.generation.images import list_images
    from xmodal.pretrained.clip import SimpleTokenizer, clip_vit_b32

    cands = read_json(candidates)
    files = {p.stem: p for p in list_images(images)}
    missing = sorted(set(cands) - set(files))
    if missing:
        raise MetricInputError(f"no image for ids {missing[:5]}", source=candidates)
    ids = sorted(cands)
    refs = None
    if references is not None:
        ref_map = read_json(references)
        refs = [ref_map[i] if isinstance(ref_map.get(i), list) else [] for i in ids]
    model = clip_vit_b32(weights, check=not no_checksum)
    tokenizer = SimpleTokenizer(weights if weights is not None and weights.is_dir() else None)
    imgs = [Image.open(files[i]) for i in ids]
    result = clip_score(model, tokenizer, imgs, [cands[i] for i in ids], refs)
    _emit({**result, "count": len(ids)}, out)
