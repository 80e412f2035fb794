"""LoRA adapters for GrootL (peft), including the ``out_proj`` adapter peft refuses on Mamba.

The release adapts ``x_proj``, ``embeddings``, ``in_proj`` and ``out_proj`` (r=8, alpha=16,
no dropout). peft >= 0.16 raises for ``out_proj`` (and ``conv1d``) on every model whose
``model_type`` is ``"mamba"``: transformers' CUDA fast path (``mamba_inner_fn`` from
mamba-ssm) reads ``out_proj.weight`` directly instead of calling the module, so an
adapter there would be silently skipped in training. :class:`~grootl.modeling.GrootLMixer`
never takes that path; it always calls ``self.out_proj(...)``, so the adapter is applied.
:func:`out_proj_adapters_allowed` therefore lifts that one refusal, and only while every
Mamba mixer in the model is a ``GrootLMixer``; ``conv1d`` stays refused. ``dt_proj`` is
refused on GrootL models for the same reason: the mixer reads ``dt_proj.weight`` itself (to
add the bias in float32, as transformers does), so an adapter there would never be applied.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraModel
from torch import nn
from transformers.models.mamba.modeling_mamba import MambaMixer

from .modeling import GrootLMixer
from .untrusted import pickle_policy

__all__ = ["LORA_TARGET_MODULES", "make_lora_config", "out_proj_adapters_allowed", "add_lora", "load_lora"]

LORA_TARGET_MODULES = ("x_proj", "embeddings", "in_proj", "out_proj")


def make_lora_config(
    r: int = 8, alpha: int = 16, dropout: float = 0.0, target_modules: Sequence[str] = LORA_TARGET_MODULES
) -> LoraConfig:
    """The release's LoRA settings (causal LM, no bias)."""
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def _mixers_call_out_proj(model: nn.Module) -> bool:
    mixers = [m for m in model.modules() if isinstance(m, MambaMixer)]
    return bool(mixers) and all(isinstance(m, GrootLMixer) for m in mixers)


@contextlib.contextmanager
def out_proj_adapters_allowed(model: nn.Module) -> Iterator[None]:
    """While active, peft accepts ``out_proj`` adapters on ``model`` if it is a GrootL model."""
    refuse = LoraModel._check_target_module_compatiblity
    grootl = _mixers_call_out_proj(model)

    def check(tuner, peft_config, target_model, target_name):
        if grootl and target_name == "dt_proj":
            raise ValueError(
                "LoRA target `dt_proj` is not supported: GrootLMixer reads dt_proj.weight directly (the bias "
                "is added in float32), so an adapter there would be silently skipped; adapt x_proj instead"
            )
        if not (grootl and target_name == "out_proj"):
            refuse(tuner, peft_config, target_model, target_name)

    LoraModel._check_target_module_compatiblity = check
    try:
        yield
    finally:
        LoraModel._check_target_module_compatiblity = refuse


def add_lora(model: nn.Module, config: LoraConfig | None = None) -> PeftModel:
    """``get_peft_model`` with the release's adapters (or ``config``)."""
    with out_proj_adapters_allowed(model):
        return get_peft_model(model, config if config is not None else make_lora_config())


def load_lora(model: nn.Module, adapter_path: str, is_trainable: bool = False, trusted: bool = False) -> PeftModel:
    """``PeftModel.from_pretrained`` for an adapter saved by :mod:`grootl.train`.

    An ``adapter_model.bin`` (pickle) is read tensors-only unless ``trusted`` (see
    :mod:`grootl.untrusted`); ``adapter_model.safetensors`` is read as always.
    """
    with pickle_policy(trusted, "pass trusted=True to load_lora"), out_proj_adapters_allowed(model):
        return PeftModel.from_pretrained(model, adapter_path, is_trainable=is_trainable)
