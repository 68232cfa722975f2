"""Layer-wise learning-rate decay (RetailKLIP): deeper layers learn faster than early ones.

Depth is found from parameter names, in registration order, for both open_clip tower kinds:
- ViT towers: `conv1`, `class_embedding`, `positional_embedding`, `ln_pre` are depth 0, the i-th
  `transformer.resblocks.i` is depth i + 1, and what follows (`ln_post`, `proj`, pooling) is last;
- timm towers (EfficientNet-Lite0): the stem is depth 0, `trunk.blocks.i` (a stage) is depth i + 1,
  and the head (`conv_head`, `bn2`, projection) is last.
Group at depth d gets `lr * decay ** (last - d)`. Biases and norm weights (1-d tensors) get no
weight decay, so every depth has up to two groups.
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

BLOCK_PATTERN = re.compile(r"(?:^|\.)(?:resblocks|blocks|stages|layers)\.(\d+)\.")
# Head parameters by name, because open_clip registers the ViT `proj` before `conv1`.
HEAD_PATTERN = re.compile(
    r"^(?:ln_post|proj|attn_pool\w*|head|trunk\.(?:conv_head|bn2|head|fc_norm))\b"
)


def parameter_depths(module: nn.Module) -> tuple[dict[str, int], int]:
    """Depth of every trainable parameter and the deepest depth (the head)."""
    names = [n for n, p in module.named_parameters() if p.requires_grad]
    blocks = {n: int(m.group(1)) for n in names if (m := BLOCK_PATTERN.search(n))}
    if not blocks:
        # No recognised block structure: one group at full rate.
        return dict.fromkeys(names, 0), 0
    last = max(blocks.values()) + 2
    depths: dict[str, int] = {}
    seen_block = False
    for name in names:
        if HEAD_PATTERN.match(name):
            depths[name] = last
        elif name in blocks:
            depths[name] = blocks[name] + 1
            seen_block = True
        else:
            depths[name] = last if seen_block else 0
    return depths, last


def layer_decay_groups(
    module: nn.Module, lr: float, decay: float, weight_decay: float
) -> list[dict[str, Any]]:
    """AdamW parameter groups; each group records its `depth` and `name` for logging and tests."""
    depths, last = parameter_depths(module)
    params = dict(module.named_parameters())
    grouped: dict[tuple[int, bool], list[nn.Parameter]] = {}
    for name, depth in depths.items():
        no_decay = params[name].ndim <= 1 or name.endswith(
            ("class_embedding", "positional_embedding")
        )
        grouped.setdefault((depth, no_decay), []).append(params[name])
    groups = []
    for (depth, no_decay), members in sorted(grouped.items()):
        scale = decay ** (last - depth)
        groups.append(
            {
                "params": members,
                "lr": lr * scale,
                "lr_scale": scale,
                "weight_decay": 0.0 if no_decay else weight_decay,
                "depth": depth,
                "name": f"depth{depth}{'_no_wd' if no_decay else ''}",
            }
        )
    return groups
