"""The trainer: recipes (``config``), ``torch.distributed`` plumbing (``distributed``), atomic checksummed
checkpoints (``checkpoint``: safetensors + JSON, or torch.distributed.checkpoint shards under FSDP2), AdamW
parameter groups (``optim``), data order and per-sample random streams (``sampling``), CSV/TensorBoard logs
(``logging``) and the loop (``loop.train``)."""

from xmodal.train.config import TrainConfig, load_recipe, parse_train_config
from xmodal.train.loop import TrainResult, seed_everything, train

__all__ = ["TrainConfig", "TrainResult", "load_recipe", "parse_train_config", "seed_everything", "train"]
