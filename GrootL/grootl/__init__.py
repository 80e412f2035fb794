"""GrootL: tree-topology Mamba language model.

``GrootLMambaForCausalLM`` loads an unmodified Mamba checkpoint and runs the tree scan of
the paper in every mixer (see :mod:`grootl.modeling`). Command-line entry points:
``python -m grootl.train`` (LoRA fine-tuning), ``python -m grootl.merge`` and
``python -m grootl.evaluate`` (lm-evaluation-harness). Heavier pieces (peft, lm-eval) are
imported only by the modules that need them.
"""

from .configuration import GrootLMambaConfig
from .modeling import GrootLMambaBlock, GrootLMambaForCausalLM, GrootLMambaModel, GrootLMixer
from .prompts import PromptLayout, prompt_lengths_from_labels

__all__ = [
    "GrootLMambaConfig",
    "GrootLMixer",
    "GrootLMambaBlock",
    "GrootLMambaModel",
    "GrootLMambaForCausalLM",
    "PromptLayout",
    "prompt_lengths_from_labels",
]
