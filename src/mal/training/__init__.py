"""Lightning training: the task (model + losses + MAL schedule), data module and runners."""

from mal.training.run import finetune, train
from mal.training.task import VARIANTS, EnhancementTask

__all__ = ["EnhancementTask", "VARIANTS", "finetune", "train"]
