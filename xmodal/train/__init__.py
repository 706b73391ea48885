"""The trainer: recipes (``config``), ``torch.distributed`` plumbing (``distributed``), atomic safetensors+JSON
checkpoints (``checkpoint``), CSV/TensorBoard logs (``logging``) and the loop (``loop.train``)."""

from xmodal.train.config import TrainConfig, load_recipe, parse_train_config
from xmodal.train.loop import TrainResult, seed_everything, train

__all__ = ["TrainConfig", "TrainResult", "load_recipe", "parse_train_config", "seed_everything", "train"]
