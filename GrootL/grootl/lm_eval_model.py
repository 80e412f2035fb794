"""GrootL as an lm-evaluation-harness model, registered as ``grootl`` (alias ``mamba``, the
release's name). Importing this module registers it.

Unlike the release, which threads the context length through a patched copy of lm-eval and
evaluates one request at a time, every request here carries its own context length and
requests are batched: each row of a batch is scored with the tree of its own context (the
model's per-row ``contex_len``), so batching does not change any score.

Model arguments (``--model_args key=value,...``): ``pretrained`` (checkpoint directory or a
model instance), ``tokenizer`` (default: ``pretrained``), ``peft`` (an adapter directory to
apply unmerged), ``dtype`` (float32/bfloat16/float16), ``max_length`` (2048),
``max_gen_toks`` (256), ``use_tree``, ``tree_scale``, ``contex_len_mode``,
``trust_checkpoint`` (False: pickled weights, ``pytorch_model.bin``/``adapter_model.bin``, are
read tensors-only; see :mod:`grootl.untrusted`); plus lm-eval's ``batch_size`` and ``device``.
"""

from __future__ import annotations

import functools
import json
import math
from collections import defaultdict

import torch
import torch.nn.functional as F
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from tqdm import tqdm
from transformers import AutoTokenizer

from .configuration import CONTEX_LEN_MODES, read_tree_settings
from .errors import GrootLError
from .hub import load_named
from .lora import load_lora
from .merge import DTYPES
from .modeling import GrootLMambaForCausalLM
from .untrusted import pickle_policy

__all__ = ["GrootLEvalModel"]

# Positions scored per call of the output head.
HEAD_CHUNK = 1024


def _positive_int(name: str, value) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GrootLError(f"`{name}` must be a positive int; got {value!r}")
    return value


@register_model("grootl", "mamba")
class GrootLEvalModel(TemplateLM):
    """Batched lm-eval model for :class:`~grootl.modeling.GrootLMambaForCausalLM`."""

    def __init__(
        self,
        pretrained,
        tokenizer=None,
        peft: str | None = None,
        batch_size=16,
        device: str = "cpu",
        dtype: str = "float32",
        max_length=2048,
        max_gen_toks=256,
        use_tree: bool | None = None,
        tree_scale: float | None = None,
        contex_len_mode: str | None = None,
        trust_checkpoint: bool = False,
    ):
        super().__init__()
        if dtype not in DTYPES:
            raise GrootLError(f"`dtype` must be one of {sorted(DTYPES)}; got {dtype!r}")
        if contex_len_mode is not None and contex_len_mode not in CONTEX_LEN_MODES:
            raise GrootLError(f"`contex_len_mode` must be one of {CONTEX_LEN_MODES}; got {contex_len_mode!r}")
        if not isinstance(trust_checkpoint, bool):
            raise GrootLError(f"`trust_checkpoint` must be True or False; got {trust_checkpoint!r}")
        self._batch_size = _positive_int("batch_size", batch_size)
        self._max_length = _positive_int("max_length", max_length)
        self.max_gen_toks = _positive_int("max_gen_toks", max_gen_toks)
        try:
            self._device = torch.device(device)
        except RuntimeError as error:
            raise GrootLError(f"`device` {device!r} is not a device: {error}") from None
        if self._device.type == "cuda" and not torch.cuda.is_available():
            raise GrootLError(f"`device` {device!r}: no CUDA device is available here; use cpu")
        with pickle_policy(trust_checkpoint, "add trust_checkpoint=True to --model_args"):
            self._load(pretrained, tokenizer, peft, dtype, use_tree, tree_scale, contex_len_mode)
        if self.tokenizer.eos_token_id is None:
            raise GrootLError("the tokenizer has no EOS token, which lm-eval uses as end of text")
        self.pad_token_id = (
            self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        )

    def _load(self, pretrained, tokenizer, peft, dtype, use_tree, tree_scale, contex_len_mode) -> None:
        if isinstance(pretrained, GrootLMambaForCausalLM):
            model = pretrained
            if tokenizer is None:
                raise ValueError("`tokenizer` is required when `pretrained` is a model instance")
        elif isinstance(pretrained, str):
            load = functools.partial(GrootLMambaForCausalLM.from_pretrained, dtype=DTYPES[dtype])
            model = load_named(load, pretrained, "`pretrained`")
        else:
            raise TypeError(f"`pretrained` must be a path or a GrootLMambaForCausalLM; got {type(pretrained).__name__}")
        # An adapter is evaluated with the tree settings it was trained with (recorded beside
        # it by grootl.train); model arguments given here override them.
        settings = read_tree_settings(peft) if peft is not None else {}
        given = {"use_tree": use_tree, "tree_scale": tree_scale, "contex_len_mode": contex_len_mode}
        settings.update({key: value for key, value in given.items() if value is not None})
        for key, value in settings.items():
            setattr(model.config, key, value)
        if peft is not None:
            # Unmerged: the adapter layers stay in the model, lm_head keeps the base matrix.
            model = load_named(lambda name: load_lora(model, name), peft, "`peft`").get_base_model()
        self.model = model.to(self._device).eval()

        if tokenizer is None or isinstance(tokenizer, str):
            source, flag = (tokenizer, "`tokenizer`") if tokenizer is not None else (pretrained, "`pretrained`")
            self.tokenizer = load_named(AutoTokenizer.from_pretrained, source, flag)
        else:
            self.tokenizer = tokenizer

    # -- what lm-eval asks of a model ----------------------------------------------------

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def batch_size(self) -> int:
        return self._batch_size

    def _rows_per_batch(self) -> int:
        """``batch_size``, except 1 under ``contex_len_mode="batch_min"``: that mode gives every
        row the batch's smallest prompt, so scores would depend on which requests share a
        batch; the release evaluates one request at a time, where it is each row's own."""
        return 1 if self.model.config.contex_len_mode == "batch_min" else self.batch_size

    @property
    def device(self) -> torch.device:
        return self._device

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        return self.tokenizer.encode(string, add_special_tokens=bool(add_special_tokens))

    def tok_decode(self, tokens: list[int], **kwargs) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    # -- scoring ------------------------------------------------------------------------

    @torch.no_grad()
    def score_tokens(
        self, pairs: list[tuple[list[int], list[int]]], disable_tqdm: bool = True
    ) -> list[tuple[float, bool]]:
        """``(sum of log p(continuation | context), greedy?)`` for each ``(context, continuation)``.

        The input is ``(context + continuation)[:-1]`` cut from the left to ``max_length``; its
        prompt length (the model's ``contex_len``) is the part of the context that remains.
        Every context needs a token to predict the first continuation token from: as in
        lm-eval's HF model, an empty text context is lm-eval's to replace by ``prefix_token_id``
        (``loglikelihood`` does) before it comes here.
        """
        rows = []
        for index, (context, continuation) in enumerate(pairs):
            if not context:
                raise ValueError(
                    f"`pairs[{index}]` has an empty context; pass at least one token "
                    f"(lm-eval uses prefix_token_id={self.prefix_token_id} for an empty context)"
                )
            if not continuation:
                raise ValueError(f"`pairs[{index}]` has an empty continuation; pass at least one token to score")
            if len(continuation) > self.max_length:
                raise ValueError(
                    f"`pairs[{index}]` has a continuation of {len(continuation)} tokens; at most "
                    f"max_length={self.max_length} fit"
                )
            window = (list(context) + list(continuation))[-(self.max_length + 1) :]
            tokens = window[:-1]
            rows.append((tokens, len(tokens) - len(continuation) + 1, list(continuation)))

        results: list[tuple[float, bool] | None] = [None] * len(rows)
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
        progress = tqdm(total=len(rows), disable=disable_tqdm, desc="loglikelihood")
        rows_per_batch = self._rows_per_batch()
        for start in range(0, len(order), rows_per_batch):
            batch = order[start : start + rows_per_batch]
            longest = len(rows[batch[0]][0])
            input_ids = torch.full((len(batch), longest), self.pad_token_id, dtype=torch.long)
            attention_mask = torch.zeros((len(batch), longest), dtype=torch.long)
            for r, i in enumerate(batch):
                input_ids[r, : len(rows[i][0])] = torch.tensor(rows[i][0])
                attention_mask[r, : len(rows[i][0])] = 1
            hidden = self.model.backbone(
                input_ids.to(self.device),
                attention_mask=attention_mask.to(self.device),
                contex_len=torch.tensor([rows[i][1] for i in batch], device=self.device),
                use_cache=False,
            ).last_hidden_state
            # Only the continuations' positions go through the (vocabulary-wide) head, all rows at once.
            row_index = torch.tensor([r for r, i in enumerate(batch) for _ in rows[i][2]], device=self.device)
            position = torch.tensor(
                [rows[i][1] - 1 + k for i in batch for k in range(len(rows[i][2]))], device=self.device
            )
            target = torch.tensor([t for i in batch for t in rows[i][2]], device=self.device)
            scores, greedy = self._score_positions(hidden[row_index, position], target)
            start_of = 0
            for i in batch:
                n = len(rows[i][2])
                results[i] = (math.fsum(scores[start_of : start_of + n]), all(greedy[start_of : start_of + n]))
                start_of += n
            progress.update(len(batch))
        progress.close()
        return results

    def _score_positions(self, hidden: torch.Tensor, target: torch.Tensor) -> tuple[list[float], list[bool]]:
        """log p(target) and whether it is the argmax, for hidden states ``(N, hidden)``; the
        head runs on chunks so a long rolling window never holds ``N x vocabulary`` logits."""
        scores, greedy = [], []
        for start in range(0, hidden.shape[0], HEAD_CHUNK):
            part, wanted = hidden[start : start + HEAD_CHUNK], target[start : start + HEAD_CHUNK]
            logits = self.model.lm_head(part.to(self.model.lm_head.weight.dtype)).float()
            log_probs = F.log_softmax(logits, dim=-1)
            scores += log_probs.gather(1, wanted.unsqueeze(1)).squeeze(1).tolist()
            greedy += (log_probs.argmax(-1) == wanted).tolist()
        return scores, greedy

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
        scores = self.score_tokens([(context, continuation) for _, context, continuation in requests], disable_tqdm)
        for (cache_key, _, _), answer in zip(requests, scores):
            if cache_key is not None:
                self.cache_hook.add_partial("loglikelihood", cache_key, answer)
        return scores

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        windows, owner = [], []
        for index, (text,) in enumerate(req.args for req in requests):
            for pair in get_rolling_token_windows(
                token_list=self.tok_encode(text),
                prefix_token=self.prefix_token_id,
                max_seq_len=self.max_length,
                context_len=1,
            ):
                windows.append(make_disjoint_window(pair))
                owner.append(index)
        totals = [0.0] * len(requests)
        for index, (log_prob, _) in zip(owner, self.score_tokens(windows, disable_tqdm)):
            totals[index] += log_prob
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", (req.args[0],), total)
        return totals

    # -- generation ---------------------------------------------------------------------

    @torch.no_grad()
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Batched generation (left padding; the prefill builds each row's tree, then the
        recurrent cache continues), cut at the first stop string."""
        groups = defaultdict(list)
        for index, req in enumerate(requests):
            context, gen_kwargs = req.args
            groups[json.dumps(gen_kwargs, sort_keys=True, default=str)].append((index, context, dict(gen_kwargs)))
        outputs: list[str | None] = [None] * len(requests)
        progress = tqdm(total=len(requests), disable=disable_tqdm, desc="generate_until")
        for items in groups.values():
            kwargs = items[0][2]
            until = kwargs.pop("until", None) or [self.tok_decode([self.eot_token_id])]
            until = [until] if isinstance(until, str) else list(until)
            max_new = _positive_int("max_gen_toks", kwargs.pop("max_gen_toks", self.max_gen_toks))
            do_sample = bool(kwargs.pop("do_sample", False))
            sampling = {k: kwargs.pop(k) for k in ("temperature", "top_p", "top_k") if k in kwargs} if do_sample else {}
            # An empty context becomes the prefix token, as for loglikelihood: generation needs
            # at least one token to start from.
            encoded = [
                (i, self.tok_encode(c)[-max(1, self.max_length - max_new) :] or [self.prefix_token_id])
                for i, c, _ in items
            ]
            encoded.sort(key=lambda item: -len(item[1]))
            rows_per_batch = self._rows_per_batch()
            for start in range(0, len(encoded), rows_per_batch):
                batch = encoded[start : start + rows_per_batch]
                longest = len(batch[0][1])
                input_ids = torch.full((len(batch), longest), self.pad_token_id, dtype=torch.long)
                attention_mask = torch.zeros((len(batch), longest), dtype=torch.long)
                for r, (_, ids) in enumerate(batch):
                    input_ids[r, longest - len(ids) :] = torch.tensor(ids)
                    attention_mask[r, longest - len(ids) :] = 1
                generated = self.model.generate(
                    input_ids.to(self.device),
                    attention_mask=attention_mask.to(self.device),
                    max_new_tokens=max_new,
                    do_sample=do_sample,
                    pad_token_id=self.pad_token_id,
                    eos_token_id=self.eot_token_id,
                    **sampling,
                )
                for r, (index, _) in enumerate(batch):
                    text = self.tok_decode(generated[r, longest:].tolist())
                    for stop in until:
                        if stop:
                            text = text.split(stop)[0]
                    outputs[index] = text
                    self.cache_hook.add_partial("generate_until", requests[index].args, text)
                progress.update(len(batch))
        progress.close()
        return outputs
