"""The SaT network for export: wtpsplit's ``SubwordXLMForTokenClassification`` forward, re-stated.

Built from transformers' XLM-R embeddings and layers; the only SaT-specific part is the attention
mask: with ``lookahead`` every layer before ``lookahead_split_layers`` (all layers when unset) lets
a token see at most ``lookahead // split`` tokens ahead, and from ``lookahead_split_layers`` on the
mask is causal, exactly as wtpsplit 2.2.2 builds it. The output is the boundary logit (label 0)
of every position, which is all the pipeline reads.
"""

from __future__ import annotations

import torch
from torch import nn

from .checkpoint import Checkpoint, load_state_dict
from .errors import BuildError


def _extended_mask(mask: torch.Tensor, lookahead: int | None, dtype: torch.dtype) -> torch.Tensor:
    """Additive [batch, 1, seq, seq] mask: 0 where attention is allowed, dtype.min elsewhere."""
    seq = mask.shape[1]
    keys = mask[:, None, None, :].to(dtype)
    if lookahead is not None:
        window = torch.tril(torch.ones(seq, seq, dtype=dtype, device=mask.device), diagonal=lookahead)
        allowed = keys * window
    else:
        allowed = keys.expand(-1, 1, seq, -1)
    return (1.0 - allowed) * torch.finfo(dtype).min


class SaTNetwork(nn.Module):
    def __init__(self, config, lookahead: int | None, lookahead_split_layers: int | None):
        from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaEmbeddings, XLMRobertaLayer

        super().__init__()
        self.embeddings = XLMRobertaEmbeddings(config)
        self.layers = nn.ModuleList(XLMRobertaLayer(config, layer_idx=i) for i in range(config.num_hidden_layers))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.split_layer = lookahead_split_layers
        if lookahead is not None:
            if lookahead_split_layers is not None and lookahead_split_layers > config.num_hidden_layers:
                raise BuildError(
                    f"lookahead_split_layers ({lookahead_split_layers}) exceeds num_hidden_layers "
                    f"({config.num_hidden_layers}) in the checkpoint's config.json"
                )
            self.lookahead = lookahead // (lookahead_split_layers or config.num_hidden_layers)
        else:
            self.lookahead = None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.embeddings(input_ids=input_ids)
        dtype = hidden.dtype
        mask = _extended_mask(attention_mask, self.lookahead, dtype)
        for index, layer in enumerate(self.layers):
            if self.split_layer is not None and index == self.split_layer:
                mask = _extended_mask(attention_mask, 0, dtype)
            output = layer(hidden, attention_mask=mask)
            hidden = output if isinstance(output, torch.Tensor) else output[0]
        return self.classifier(hidden)[..., 0].float()


def _network_config(config: dict):
    from transformers import XLMRobertaConfig

    fields = {k: v for k, v in config.items() if k not in ("model_type", "architectures", "auto_map")}
    xlmr = XLMRobertaConfig(**fields)
    xlmr._attn_implementation = "eager"  # plain matmul/softmax: exports to any ONNX runtime
    xlmr.is_decoder = False
    xlmr.add_cross_attention = False
    return xlmr


def load_network(checkpoint: Checkpoint, extra_state: dict | None = None, state: dict | None = None) -> SaTNetwork:
    """The network with the checkpoint's weights (``state``: already loaded, e.g. with a LoRA merged in; default:
    read from the checkpoint) plus ``extra_state``, in eval mode."""
    config = dict(checkpoint.config)
    state = dict(state) if state is not None else load_state_dict(checkpoint.directory)
    if extra_state:
        state.update(extra_state)
    if "classifier.weight" in state:
        config["num_labels"] = int(state["classifier.weight"].shape[0])
    network = SaTNetwork(_network_config(config), checkpoint.lookahead, checkpoint.lookahead_split_layers)
    mapped = {}
    for key, value in state.items():
        if key.startswith("roberta.embeddings."):
            mapped["embeddings." + key[len("roberta.embeddings."):]] = value
        elif key.startswith("roberta.encoder.layer."):
            mapped["layers." + key[len("roberta.encoder.layer."):]] = value
        elif key.startswith("classifier."):
            mapped[key] = value
    expected = network.state_dict()
    missing = [k for k in expected if k not in mapped and not k.endswith(("position_ids", "token_type_ids"))]
    if missing:
        raise BuildError(f"{checkpoint.directory}: weights missing for {', '.join(missing[:5])}; is it a SaT checkpoint?")
    network.load_state_dict(mapped, strict=False)
    return network.eval()
