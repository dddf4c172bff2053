"""Locate and read checkpoints: HF folders, (sharded) safetensors, GGUF, and pickles behind a flag."""

from audit.checkpoint.locate import open_checkpoint
from audit.checkpoint.model import Checkpoint, TensorInfo

__all__ = ["Checkpoint", "TensorInfo", "open_checkpoint"]
