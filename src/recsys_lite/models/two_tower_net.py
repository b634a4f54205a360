"""The two towers and their loss in torch (training only), and the tower MLP in numpy, which
serves what torch trained.

torch is imported inside the functions that need it: a server holding a trained model imports
this module and never loads torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import numpy as np

from recsys_lite.models.catalog_features import FEATURES, ItemFeatures
from recsys_lite.models.two_tower_examples import POOLED, Bags
from recsys_lite.models.two_tower_params import TwoTowerParams
from recsys_lite.models.vectors import unit_rows

if TYPE_CHECKING:
    import torch


def in_batch_softmax_loss(
    user_vectors: torch.Tensor,
    item_vectors: torch.Tensor,
    items: torch.Tensor,
    log_q: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Sampled softmax over the batch with the logQ correction (Yi et al. 2019, eq. 3).

    Row i's positive is column i. Every target of the batch is a negative for the other rows,
    drawn with probability ``q`` (its share of training examples), so its logit is lowered by
    ``log q`` to make the estimate unbiased for the full softmax. Other columns holding row i's
    own item are dropped: they are the positive again, not a negative.
    """
    import torch
    import torch.nn.functional as F

    logits = torch.addmm(-log_q.unsqueeze(0), user_vectors, item_vectors.T, alpha=1 / temperature)
    rows, cols = _repeated_pairs(items)
    if len(rows):
        logits[rows, cols] = float("-inf")
    return F.cross_entropy(logits, torch.arange(len(items)))


def _repeated_pairs(items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, column) of every pair of distinct batch positions holding the same item."""
    import torch

    _, inverse, counts = torch.unique(items, return_inverse=True, return_counts=True)
    # Comparing only the rows whose item repeats keeps this far below batch² work.
    repeated = torch.nonzero(counts[inverse] > 1).squeeze(1)
    same = items[repeated][:, None] == items[repeated][None, :]
    same.fill_diagonal_(False)
    rows, cols = torch.nonzero(same, as_tuple=True)
    return repeated[rows], repeated[cols]


def build_net(
    n_users: int, n_items: int, feature_sizes: dict[str, int], p: TwoTowerParams
) -> torch.nn.ModuleDict:
    from torch import nn

    d = p.embedding_dim

    def mlp(inputs: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Linear(inputs * d, p.hidden_dim), nn.ReLU(), nn.Linear(p.hidden_dim, p.output_dim)
        )

    net = nn.ModuleDict(
        {
            # The last row of each id table stands for "no id": unknown users, cold items. Id
            # tables grow with the shop; sparse gradients let a step touch only its batch's rows.
            "user_id": nn.Embedding(n_users + 1, d, sparse=True),
            "item_id": nn.Embedding(n_items + 1, d, sparse=True),
            "history_item": nn.Embedding(n_items, d, sparse=True),
            **{name: nn.Embedding(size, d) for name, size in feature_sizes.items()},
            "user_mlp": mlp(1 + len(POOLED)),
            "item_mlp": mlp(1 + len(FEATURES)),
        }
    )
    for module in net.values():
        if isinstance(module, nn.Embedding):
            # Unit-variance defaults would swamp the MLPs with the concatenated embeddings.
            nn.init.normal_(module.weight, std=0.1)
    return net


def user_tower(
    net: torch.nn.ModuleDict,
    users: torch.Tensor,
    bags: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
) -> torch.Tensor:
    """``bags`` holds, per pooled table, the codes, weights and offsets of ``history_bags``."""
    import torch
    import torch.nn.functional as F

    parts = [net["user_id"](users)]
    for name in POOLED:
        codes, weights, offsets = bags[name]
        table = net[name]
        parts.append(
            F.embedding_bag(
                codes,
                cast("torch.Tensor", table.weight),
                offsets,
                mode="sum",
                per_sample_weights=weights,
                sparse=bool(table.sparse),
            )
        )
    return F.normalize(net["user_mlp"](torch.cat(parts, dim=1)), dim=1)


def item_tower(
    net: torch.nn.ModuleDict, ids: torch.Tensor, codes: dict[str, torch.Tensor]
) -> torch.Tensor:
    """``ids`` are id embedding rows: the item's own, or the "no id" row."""
    import torch
    import torch.nn.functional as F

    parts = [net["item_id"](ids)] + [net[name](codes[name]) for name in FEATURES]
    return F.normalize(net["item_mlp"](torch.cat(parts, dim=1)), dim=1)


def as_tensors(bags: Bags) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    import torch

    return {
        name: (torch.from_numpy(codes), torch.from_numpy(weights), torch.from_numpy(offsets))
        for name, (codes, weights, offsets) in bags.items()
    }


def feature_tensors(features: ItemFeatures) -> dict[str, torch.Tensor]:
    import torch

    return {name: torch.from_numpy(features.code(name)) for name in FEATURES}


def tower_mlp(net: dict[str, np.ndarray], prefix: str, inputs: np.ndarray) -> np.ndarray:
    """The tower MLP of ``build_net`` and the L2 normalisation after it."""
    hidden = np.maximum(inputs @ net[f"{prefix}.0.weight"].T + net[f"{prefix}.0.bias"], 0.0)
    out = hidden @ net[f"{prefix}.2.weight"].T + net[f"{prefix}.2.bias"]
    return unit_rows(out)
