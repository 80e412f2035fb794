"""Fold a LoRA adapter into its base and save a plain Mamba checkpoint (``python -m grootl.merge``).

    python -m grootl.merge --base_model mamba-130m-hf --peft_model out_exp --save_path grootl-130m-hf

The result is a stock ``MambaForCausalLM`` directory (``model_type`` "mamba") that
``GrootLMambaForCausalLM`` and ``MambaForCausalLM`` both load; it appears atomically (written
aside, then renamed). Its ``config.json`` keeps the tree settings the adapter was trained
with (``use_tree``, ``tree_scale``, ``contex_len_mode``, read from the adapter folder's
``grootl_tree.json`` that training writes; the paper's when it has none): GrootL loads the
model that was trained, stock Mamba ignores the three fields.

Tied embeddings. Mamba ties ``lm_head`` to the input embeddings. An adapter on ``embeddings``
changes the embedding lookup only: during training the output head kept the base matrix.
Merging in place would move the head too (they are one tensor), so by default the merge
unties them: embeddings = base + delta, lm_head = base, ``tie_word_embeddings = false``,
which computes exactly what was trained. ``--tie_embeddings`` keeps them tied (the head moves
with the merged embeddings), which is what the release's merged checkpoints contain.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn
from transformers import AutoTokenizer, MambaConfig, MambaForCausalLM

from .atomic import atomic_directory
from .configuration import read_tree_settings
from .lora import load_lora
from .modeling import GrootLMambaForCausalLM

__all__ = ["DTYPES", "merge", "main"]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def merge(
    base_model: str | Path,
    peft_model: str | Path,
    save_path: str | Path,
    dtype: str = "float32",
    tie_embeddings: bool = False,
    overwrite: bool = False,
) -> Path:
    """Merges the adapter in ``peft_model`` into ``base_model`` and saves it at ``save_path``."""
    if dtype not in DTYPES:
        raise ValueError(f"`dtype` must be one of {sorted(DTYPES)}; got {dtype!r}")
    for name, path in (("base_model", base_model), ("peft_model", peft_model)):
        if not Path(path).is_dir():
            raise ValueError(f"`{name}` {str(path)!r} is not a directory")
    if not (Path(peft_model) / "adapter_config.json").is_file():
        raise ValueError(f"`peft_model` {str(peft_model)!r} holds no adapter_config.json")
    save_path = Path(save_path)
    if save_path.exists() and not overwrite:
        raise ValueError(f"`save_path` {str(save_path)!r} exists; pass overwrite=True (--overwrite) to replace it")

    model = GrootLMambaForCausalLM.from_pretrained(base_model, dtype=DTYPES[dtype], **read_tree_settings(peft_model))
    if model.config.tie_word_embeddings and not tie_embeddings:
        model.lm_head.weight = nn.Parameter(model.lm_head.weight.detach().clone())
        model.config.tie_word_embeddings = False
    merged = load_lora(model, str(peft_model)).merge_and_unload()

    config = merged.config.to_dict()
    config.pop("architectures", None)
    plain_config = MambaConfig.from_dict(config)
    with torch.device("meta"):
        plain = MambaForCausalLM(plain_config)

    tokenizer_source = peft_model if (Path(peft_model) / "tokenizer_config.json").is_file() else base_model
    save_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(save_path) as staging:
        plain.save_pretrained(staging, state_dict={k: v.contiguous() for k, v in merged.state_dict().items()})
        AutoTokenizer.from_pretrained(tokenizer_source).save_pretrained(staging)
    return save_path


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base_model", required=True, help="the Mamba checkpoint the adapter was trained on")
    parser.add_argument("--peft_model", required=True, help="the adapter directory written by grootl.train")
    parser.add_argument("--save_path", required=True, help="where the merged checkpoint goes")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    parser.add_argument(
        "--tie_embeddings", action="store_true", help="keep lm_head tied to the merged embeddings (the release)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --save_path")
    args = parser.parse_args(argv)
    path = merge(args.base_model, args.peft_model, args.save_path, args.dtype, args.tie_embeddings, args.overwrite)
    print(f"merged checkpoint written to {path}")
    return path


if __name__ == "__main__":
    main(sys.argv[1:])
