"""GrootL: Mamba whose selective scan runs over a chain and a tree (SPEC §4).

Subclasses of transformers' Mamba classes, same parameter names, so an unmodified Mamba
checkpoint loads as it is. Inside :class:`GrootLMixer`, top to bottom:

    in_proj -> (x, gate) -> causal conv1d -> act -> x_proj -> (dt, B, C)
    -> dt = softplus(dt_proj(dt)); u = dt * B * x; A_bar = exp(A * dt)     (d_inner x d_state channels)
    -> flip the sequence (vertex 0 = the last token)
    -> scan 1: causal scan on the chain          (= Mamba's recurrence h_t = A_bar_t h_{t-1} + u_t)
    -> scan 2: causal scan on the language tree  (MST of the candidate edges, built HERE: _tree_order)
    -> h = scan1 + tree_scale * scan2 -> flip back -> y = C h + D x -> y * silu(gate) -> out_proj

The edge between a vertex and its parent carries the child's ``roll(flip(A_bar), 1)`` weight,
i.e. the decay of the token that follows the child, as in the release.

By default (``config.fused_scan``) everything from ``u`` to ``y = C h + D x`` runs as one operator,
``tree_scan_lan.selective_tree_scan``, which never forms the ``(B, L, d_inner, d_state)`` tensors
(``u``, ``A_bar``, the states): they exist only inside its kernel, per block of channels. The
tree's edge weights need the cosines of the ``u`` features, which factor as
``u_t = (dt_t x_t) ⊗ B_t`` (see :meth:`GrootLMixer._fused_scan_prompt`). ``fused_scan=False``
runs the unfused path above, the reference twin the tests compare against.

Generation. Tokens after the prompt are bridges of the continuation chain in BOTH trees
(every path from them to the prompt runs through their predecessor), so both scans obey
``s_t = A_bar_t s_{t-1} + u_t`` there, and their combination ``h = s1 + tree_scale * s2``
obeys ``h_t = A_bar_t h_{t-1} + (1 + tree_scale) u_t``. The recurrent cache therefore
carries ``h`` at the last prompt token and every new token costs O(1), exactly what a full
recomputation with ``contex_len`` = the prompt length gives (up to rounding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.cache_utils import Cache, DynamicCache
from transformers.integrations.accelerate import force_accelerate_hooks
from transformers.modeling_utils import slice_logits_to_keep
from transformers.models.mamba.modeling_mamba import (
    MambaBlock,
    MambaCausalLMOutput,
    MambaForCausalLM,
    MambaMixer,
    MambaModel,
    MambaOutput,
    MambaPreTrainedModel,
    MambaRMSNorm,
    apply_mask_to_padding_states,
)

import tree_scan_lan

from .configuration import GrootLMambaConfig
from .prompts import PromptLayout, prompt_lengths_from_labels
from .untrusted import pickle_policy

__all__ = ["GrootLMixer", "GrootLMambaBlock", "GrootLMambaModel", "GrootLMambaForCausalLM"]


class GrootLMixer(MambaMixer):
    """Transformers' ``MambaMixer`` with the selective scan replaced by chain + tree scans.

    Reads ``tree_scale``, ``use_tree``, ``contex_len_mode`` and ``fused_scan`` from the config at
    every call (a plain ``MambaConfig`` gives the defaults), so they can be changed on a built model.
    """

    @force_accelerate_hooks(["conv1d", "dt_proj"])
    def forward(
        self,
        hidden_states: torch.Tensor,
        cache_params: Cache | None = None,
        attention_mask: torch.Tensor | None = None,
        contex_len=None,
    ) -> torch.Tensor:
        """``hidden_states (B, L, hidden)`` -> ``(B, L, hidden)``.

        Args:
            cache_params: a ``DynamicCache``; without a state for this layer the call is a
                prefill (the whole input is scanned and the final state stored), with one it
                is a continuation of the cached sequence (chain updates; ``contex_len`` unused).
            attention_mask: ``(B, L)``, 1 on real tokens (left and/or right padding).
            contex_len: prompt length per row (int, list of ints, (B,) tensor or a
                :class:`~grootl.prompts.PromptLayout`); ``None`` = every real token is prompt.
        """
        batch, seq_len, _ = hidden_states.shape
        dtype = hidden_states.dtype
        # Read before the conv update below, which marks the layer as having a past.
        previous_state = cache_params.get_recurrent_state(self.layer_idx) if cache_params is not None else None

        hidden_states = apply_mask_to_padding_states(hidden_states, attention_mask)
        x, gate = self.in_proj(hidden_states).transpose(1, 2).chunk(2, dim=1)
        x = self._causal_conv(x, cache_params)
        x = apply_mask_to_padding_states(x.transpose(1, 2), attention_mask)  # (B, L, d_inner)

        time_step, B, C = torch.split(
            self.x_proj(x), [self.time_step_rank, self.ssm_state_size, self.ssm_state_size], dim=-1
        )
        # The bias is added in float32, as transformers does: in bf16 it would round dt by ~1%.
        dt = F.softplus(F.linear(time_step, self.dt_proj.weight).float() + self.dt_proj.bias.float())
        A = -torch.exp(self.A_log.float())

        if previous_state is None:
            layout = PromptLayout.build(
                contex_len, batch, seq_len, attention_mask, self._batch_min(), device=hidden_states.device
            )
            if self._fused_scan():
                y, final_state = self._fused_scan_prompt(dt, A, B, C, x, layout)
            else:
                states, final_state = self._scan_prompt(dt, A, B, x, layout)
                y = self._read_out(states, C.flip(1), dtype).flip(1) + x * self.D.float()
        else:
            states, final_state = self._continue(previous_state, dt, A, B, x)
            y = self._read_out(states, C, dtype) + x * self.D.float()
        if cache_params is not None:
            cache_params.update_recurrent_state(final_state, self.layer_idx)

        y = y * F.silu(gate.transpose(1, 2))
        return self.out_proj(y.to(dtype))

    # -- configuration -------------------------------------------------------------------

    def _use_tree(self) -> bool:
        return bool(getattr(self.config, "use_tree", True))

    def _tree_scale(self) -> float:
        return float(getattr(self.config, "tree_scale", 0.3))

    def _batch_min(self) -> bool:
        return getattr(self.config, "contex_len_mode", "per_row") == "batch_min"

    def _fused_scan(self) -> bool:
        return bool(getattr(self.config, "fused_scan", True))

    # -- pieces ---------------------------------------------------------------------------

    def _causal_conv(self, x: torch.Tensor, cache_params: Cache | None) -> torch.Tensor:
        """Depth-wise causal conv + activation; with a cache the kept window is prepended."""
        seq_len = x.shape[-1]
        if cache_params is not None:
            x = cache_params.update_conv_state(x, self.layer_idx, conv_kernel_size=self.conv_kernel_size)
        return self.act(self.conv1d(x)[..., : x.shape[-1]])[..., -seq_len:]

    def _scan_prompt(self, dt, A, B, x, layout: PromptLayout):
        """Chain + tree scans over a whole input. Returns the flipped states ``(B, L, d_inner, N)``
        and the state at the last token ``(B, d_inner, N)``."""
        batch, seq_len, d_inner = dt.shape
        channels = d_inner * self.ssm_state_size
        dt_flipped = dt.flip(1)
        # Flipped layout (B, L, d_inner, N), contiguous: the scans read it as (B, C, L) views.
        u = (dt_flipped.unsqueeze(-1) * B.float().flip(1).unsqueeze(2)) * x.float().flip(1).unsqueeze(-1)
        w = torch.exp(A * dt_flipped.roll(1, dims=1).unsqueeze(-1))
        u_scan = u.view(batch, seq_len, channels).transpose(1, 2)
        w_scan = w.view(batch, seq_len, channels).transpose(1, 2)

        chain = tree_scan_lan.chain(batch, seq_len, device=dt.device)
        h = tree_scan_lan.tree_scan_causal(u_scan, w_scan, chain)
        if self._use_tree():
            if layout.longest <= 2:
                # Prompts of <= 2 tokens: the second tree is the chain itself.
                h = h * (1.0 + self._tree_scale())
            else:
                tree = self._tree_order(u, layout)
                h = torch.add(h, tree_scan_lan.tree_scan_causal(u_scan, w_scan, tree), alpha=self._tree_scale())
        states = h.transpose(1, 2).view(batch, seq_len, d_inner, self.ssm_state_size)
        return states, states[:, 0]

    def _fused_scan_prompt(self, dt, A, B, C, x, layout: PromptLayout):
        """What :meth:`_scan_prompt` and the read-out compute, by the fused operator: returns
        ``y = C h + D x`` ``(B, L, d_inner)`` and the state at the last token ``(B, d_inner, N)``."""
        tree, tree_scale = None, 0.0  # tree off: the chain alone, Mamba's scan
        if self._use_tree():
            tree_scale = self._tree_scale()
            if layout.longest > 2:
                # u_t = (dt_t x_t) ⊗ B_t, so the cosines of the u features come from these two
                # factors without forming u.
                factors = ((dt * x.float()).flip(1), B.float().flip(1))
                tree = self._tree_order_of_factors(factors, layout)
            # else: prompts of <= 2 tokens; tree=None makes the second tree the chain itself.
        return tree_scan_lan.selective_tree_scan(x, dt, A, B, C, self.D.float(), tree, tree_scale)

    def _tree_order(self, u: torch.Tensor, layout: PromptLayout) -> tree_scan_lan.TreeOrder:
        """The language tree of every row (SPEC §1), over the flipped ``u = deltaB*x`` features."""
        batch, seq_len = u.shape[:2]
        return self._tree_order_of_factors((u.view(batch, seq_len, -1),), layout)

    def _tree_order_of_factors(self, factors, layout: PromptLayout) -> tree_scan_lan.TreeOrder:
        """The language tree of every row over features given as the outer product of token-major
        ``factors`` ``(B, L, C_k)`` of the flipped sequence (one factor: the features themselves)."""
        batch = factors[0].shape[0]
        if layout.relabel is None:
            tree = tree_scan_lan.language_tree_of_factors([f.transpose(1, 2) for f in factors], layout.lengths)
        else:
            # Left-padded rows: build the tree on the row with its pads moved behind its tokens
            # (there no pad is in a real token's subtree), then give the vertices their real places.
            # Rooted at vertex 0 again, every real token keeps its parent; the pads, whose input
            # is zero, add nothing to the real tokens.
            index = layout.relabel
            compact = [torch.gather(f, 1, index.unsqueeze(-1).expand(-1, -1, f.shape[-1])) for f in factors]
            tree = tree_scan_lan.language_tree_of_factors([f.transpose(1, 2) for f in compact], layout.lengths)
            tree = torch.gather(index, 1, tree.reshape(batch, -1)).view_as(tree)
        return tree_scan_lan.prepare(tree, validate=False)  # made here: no check needed

    def _continue(self, previous_state, dt, A, B, x):
        """Tokens after a cached prefix: one recurrence step each (see the module docstring)."""
        input_scale = 1.0 + self._tree_scale() if self._use_tree() else 1.0
        state = previous_state.float()
        states = []
        for t in range(dt.shape[1]):
            decay = torch.exp(A * dt[:, t].unsqueeze(-1))
            u = (dt[:, t].unsqueeze(-1) * B[:, t].float().unsqueeze(1)) * x[:, t].float().unsqueeze(-1)
            state = decay * state + input_scale * u
            states.append(state)
        return torch.stack(states, dim=1), state

    @staticmethod
    def _read_out(states: torch.Tensor, C: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``y[b, l, d] = sum_n states[b, l, d, n] C[b, l, n]`` in the model dtype, as transformers."""
        return torch.matmul(states.to(dtype), C.to(dtype).unsqueeze(-1)).squeeze(-1)


class GrootLMambaBlock(MambaBlock):
    """``MambaBlock`` with a :class:`GrootLMixer`, passing ``contex_len`` down."""

    def __init__(self, config, layer_idx: int):
        super().__init__(config, layer_idx)
        self.mixer = GrootLMixer(config, layer_idx=layer_idx, initialize_mixer_weights=False)

    def forward(
        self,
        hidden_states: torch.Tensor,
        cache_params: Cache | None = None,
        attention_mask: torch.Tensor | None = None,
        contex_len=None,
    ) -> torch.Tensor:
        residual = hidden_states
        hidden_states = self.norm(hidden_states.to(dtype=self.norm.weight.dtype))
        if self.residual_in_fp32:
            residual = residual.to(torch.float32)
        hidden_states = self.mixer(
            hidden_states, cache_params=cache_params, attention_mask=attention_mask, contex_len=contex_len
        )
        return residual + hidden_states


class GrootLMambaPreTrainedModel(MambaPreTrainedModel):
    # An attribute, not an annotation: this module's annotations are strings (PEP 563).
    config_class = GrootLMambaConfig
    _no_split_modules = ["GrootLMambaBlock"]

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        # Pickled weights (pytorch_model.bin) are read tensors-only, unless transformers' own
        # switch weights_only=False is given; a refusal names the file and that switch.
        with pickle_policy(kwargs.get("weights_only") is False, "pass weights_only=False to from_pretrained"):
            return super().from_pretrained(*args, **kwargs)


class GrootLMambaModel(GrootLMambaPreTrainedModel, MambaModel):
    """``MambaModel`` built from :class:`GrootLMambaBlock` layers."""

    def __init__(self, config):
        GrootLMambaPreTrainedModel.__init__(self, config)
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(
            [GrootLMambaBlock(config, layer_idx=idx) for idx in range(config.num_hidden_layers)]
        )
        self.gradient_checkpointing = False
        self.norm_f = MambaRMSNorm(config.hidden_size, eps=config.layer_norm_epsilon)
        self._register_load_state_dict_pre_hook(self.load_hook)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        cache_params: Cache | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        attention_mask: torch.Tensor | None = None,
        contex_len=None,
        **kwargs,
    ) -> tuple | MambaOutput:
        """As ``MambaModel.forward`` (which also takes and ignores other keyword arguments), plus
        ``contex_len`` (see :meth:`GrootLMixer.forward`)."""
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        use_cache = use_cache if use_cache is not None else (self.config.use_cache if not self.training else False)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if (input_ids is None) ^ (inputs_embeds is not None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embeddings(input_ids)
        if self.gradient_checkpointing and self.training and use_cache:
            use_cache = False
        if use_cache and cache_params is None:
            cache_params = DynamicCache(config=self.config)

        batch, seq_len = inputs_embeds.shape[:2]
        if attention_mask is not None and attention_mask.dim() == 2 and attention_mask.shape[1] > seq_len:
            # The usual generation convention: the mask covers the cached tokens too.
            attention_mask = attention_mask[:, -seq_len:]
        continuing = cache_params is not None and cache_params.get_recurrent_state(0) is not None
        if not continuing:
            # Checked and resolved once here rather than in every layer.
            contex_len = PromptLayout.build(
                contex_len,
                batch,
                seq_len,
                attention_mask,
                getattr(self.config, "contex_len_mode", "per_row") == "batch_min",
                device=inputs_embeds.device,
            )

        hidden_states = inputs_embeds
        all_hidden_states = () if output_hidden_states else None
        for mixer_block in self.layers:
            hidden_states = mixer_block(
                hidden_states, cache_params=cache_params, attention_mask=attention_mask, contex_len=contex_len
            )
            if output_hidden_states:
                all_hidden_states = all_hidden_states + (hidden_states,)
        hidden_states = self.norm_f(hidden_states)
        if output_hidden_states:
            all_hidden_states = all_hidden_states + (hidden_states,)

        if not return_dict:
            return tuple(v for v in [hidden_states, cache_params, all_hidden_states] if v is not None)
        return MambaOutput(
            last_hidden_state=hidden_states,
            cache_params=cache_params if use_cache else None,
            hidden_states=all_hidden_states,
        )


class GrootLMambaForCausalLM(GrootLMambaPreTrainedModel, MambaForCausalLM):
    """``MambaForCausalLM`` over :class:`GrootLMambaModel`.

    ``contex_len`` defaults to: the label positions equal to -100 of each row when ``labels``
    are given (training), otherwise every real token (a prompt to continue). ``generate``
    treats its input as the prompt: the prefill builds the trees, new tokens extend the chain.
    """

    def __init__(self, config):
        GrootLMambaPreTrainedModel.__init__(self, config)
        self.backbone = GrootLMambaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        cache_params: Cache | None = None,
        labels: torch.LongTensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        contex_len=None,
        **kwargs,
    ) -> tuple | MambaCausalLMOutput:
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if contex_len is None and labels is not None:
            contex_len = prompt_lengths_from_labels(labels, attention_mask)

        outputs = self.backbone(
            input_ids,
            cache_params=cache_params,
            inputs_embeds=inputs_embeds,
            output_hidden_states=output_hidden_states,
            return_dict=return_dict,
            use_cache=use_cache,
            attention_mask=attention_mask,
            contex_len=contex_len,
        )
        hidden_states = slice_logits_to_keep(outputs[0], logits_to_keep)
        logits = self.lm_head(hidden_states.to(self.lm_head.weight.dtype)).float()

        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)

        if not return_dict:
            output = (logits,) + tuple(outputs[1:])
            return ((loss,) + output) if loss is not None else output
        return MambaCausalLMOutput(
            loss=loss, logits=logits, cache_params=outputs.cache_params, hidden_states=outputs.hidden_states
        )

    def generate(self, inputs: torch.Tensor | None = None, *args, **kwargs):
        """``GenerationMixin.generate``; the input is the prompt (``contex_len`` defaults to its real tokens).

        Fixing ``contex_len`` here keeps the tree on the prompt when generation recomputes
        the whole sequence at every step (``use_cache=False``) as well. Without an
        ``attention_mask`` it is fixed where generation infers the mask from the padding
        (:meth:`_prepare_attention_mask_for_generation`).
        """
        contex_len = kwargs.get("contex_len")
        if contex_len is None:
            mask = kwargs.get("attention_mask")
            if mask is not None:
                kwargs["contex_len"] = mask.long().sum(1)
        elif isinstance(contex_len, (list, tuple)):
            # A tensor, so that generation repeats it with the rows (num_beams, num_return_sequences).
            kwargs["contex_len"] = torch.as_tensor(contex_len, dtype=torch.long)
        return super().generate(inputs, *args, **kwargs)

    def _prepare_attention_mask_for_generation(self, inputs_tensor, generation_config, model_kwargs):
        """The mask generation infers when none is given (pad tokens out, unless pad = EOS);
        ``contex_len`` left unset becomes its real tokens, the prompt."""
        mask = super()._prepare_attention_mask_for_generation(inputs_tensor, generation_config, model_kwargs)
        if model_kwargs.get("contex_len") is None:
            model_kwargs["contex_len"] = mask.long().sum(1)
        return mask

    def prepare_inputs_for_generation(
        self, input_ids, inputs_embeds=None, contex_len=None, is_first_iteration=False, **kwargs
    ):
        model_inputs = super().prepare_inputs_for_generation(
            input_ids, inputs_embeds=inputs_embeds, is_first_iteration=is_first_iteration, **kwargs
        )
        # After the prefill the cache carries the prompt; only full recomputation needs the length.
        if is_first_iteration or model_inputs.get("cache_params") is None or not kwargs.get("use_cache", True):
            model_inputs["contex_len"] = contex_len
        return model_inputs
