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

Pickled weights (``pytorch_model.bin``, ``adapter_model.bin``) are read tensors-only;
``--trust_checkpoint`` unpickles files you trust in full (see :mod:`grootl.untrusted`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn
from transformers import AutoTokenizer, MambaConfig, MambaForCausalLM

from .atomic import atomic_directory, remove_leftovers
from .configuration import read_tree_settings
from .errors import CheckpointError, GrootLError, run_command
from .lora import load_lora
from .modeling import GrootLMambaForCausalLM
from .untrusted import pickle_policy

__all__ = ["DTYPES", "merge", "run", "main"]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def merge(
    base_model: str | Path,
    peft_model: str | Path,
    save_path: str | Path,
    dtype: str = "float32",
    tie_embeddings: bool = False,
    overwrite: bool = False,
    trusted: bool = False,
) -> Path:
    """Merges the adapter in ``peft_model`` into ``base_model`` and saves it at ``save_path``.
    Pickled weights are unpickled in full only when ``trusted`` (``--trust_checkpoint``)."""
    if dtype not in DTYPES:
        raise GrootLError(f"`dtype` must be one of {sorted(DTYPES)}; got {dtype!r}")
    for name, path in (("base_model", base_model), ("peft_model", peft_model)):
        if not Path(path).is_dir():
            raise CheckpointError(f"`{name}` {str(path)!r} is not a directory")
    if not (Path(peft_model) / "adapter_config.json").is_file():
        raise CheckpointError(f"`peft_model` {str(peft_model)!r} holds no adapter_config.json")
    save_path = Path(save_path)
    if save_path.exists() and not overwrite:
        raise GrootLError(f"`save_path` {str(save_path)!r} exists; pass overwrite=True (--overwrite) to replace it")

    with pickle_policy(trusted, "add --trust_checkpoint (merge(..., trusted=True))"):
        model = GrootLMambaForCausalLM.from_pretrained(
            base_model, dtype=DTYPES[dtype], **read_tree_settings(peft_model)
        )
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
    remove_leftovers(save_path)  # of an earlier merge killed while writing it
    with atomic_directory(save_path) as staging:
        plain.save_pretrained(staging, state_dict={k: v.contiguous() for k, v in merged.state_dict().items()})
        AutoTokenizer.from_pretrained(tokenizer_source).save_pretrained(staging)
    return save_path


def run(argv: list[str] | None = None) -> Path:
    """The command line; errors the user can fix are raised as :class:`~grootl.errors.GrootLError`."""
    parser = argparse.ArgumentParser(
        prog="python -m grootl.merge",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--base_model", required=True, help="the Mamba checkpoint the adapter was trained on")
    parser.add_argument("--peft_model", required=True, help="the adapter directory written by grootl.train")
    parser.add_argument("--save_path", required=True, help="where the merged checkpoint goes")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="precision of the saved weights")
    parser.add_argument(
        "--tie_embeddings", action="store_true", help="keep lm_head tied to the merged embeddings (the release)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --save_path")
    parser.add_argument(
        "--trust_checkpoint",
        action="store_true",
        help="unpickle pytorch_model.bin / adapter_model.bin in full (can run code from them: only for files you "
        "trust); without it they are read tensors-only",
    )
    args = parser.parse_args(argv)
    path = merge(
        args.base_model, args.peft_model, args.save_path, args.dtype, args.tie_embeddings, args.overwrite,
        args.trust_checkpoint,
    )  # fmt: skip
    print(f"merged checkpoint written to {path}")
    return path


def main(argv: list[str] | None = None) -> Path:
    """``python -m grootl.merge``: a user error is one line on stderr and exit status 2."""
    return run_command(run, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
