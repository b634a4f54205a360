"""The GRU4Rec network: item input, GRU layers, an output state scored against item embeddings."""

from __future__ import annotations

import math

from recsys_lite.models.gru4rec_params import GRU4RecParams
from recsys_lite.models.sessions import Step
from recsys_lite.models.torch_runtime import load_torch

load_torch()  # before the first `import torch` (see torch_runtime)

import torch  # noqa: E402
from torch import nn  # noqa: E402


def carry_hidden(hidden: list[torch.Tensor], step: Step) -> list[torch.Tensor]:
    """The state each slot starts a step with: dropped slots removed, new sessions at zero."""
    keep = None if step.keep is None else torch.from_numpy(step.keep)
    reset = torch.from_numpy(step.reset)[:, None]
    carried = []
    for h in hidden:
        if keep is not None:
            h = h[keep]
        carried.append(h.masked_fill(reset, 0.0))
    return carried


# ----- network ---------------------------------------------------------------------------------


def _init_uniform(weight: torch.Tensor, fan_in: int, fan_out: int) -> None:
    # The official initialisation: uniform in +-sqrt(6 / (fan_in + fan_out)), with each GRU
    # gate counted as its own matrix rather than the three stacked together.
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        weight.uniform_(-bound, bound)


def _gru_update(gates_x: torch.Tensor, gates_h: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The GRU cell (reset, update and candidate gates, in torch's order and convention)."""
    x_reset, x_update, x_new = gates_x.chunk(3, dim=1)
    h_reset, h_update, h_new = gates_h.chunk(3, dim=1)
    reset = torch.sigmoid(x_reset + h_reset)
    update = torch.sigmoid(x_update + h_update)
    candidate = torch.tanh(x_new + reset * h_new)
    return (1.0 - update) * candidate + update * h


class GRU4RecNet(nn.Module):
    """Item input → GRU layers → output state, scored against the output item embeddings.

    Every item-indexed matrix is a plain parameter looked up by row: training gathers the rows
    a step needs and updates only those (see ``gru4rec_training.AdagradM.rows``).
    """

    def __init__(self, n_items: int, p: GRU4RecParams) -> None:
        super().__init__()
        sizes = list(p.layers)
        self.sizes = sizes
        self.item_out = nn.Parameter(torch.empty(n_items, sizes[-1]))
        self.item_bias = nn.Parameter(torch.zeros(n_items))
        _init_uniform(self.item_out, n_items, sizes[-1])
        # The rows of ``input_table`` feed the first layer: the output embedding itself
        # (constrained), a separate embedding, or, for one-hot input, the first layer's input
        # weights, whose row for an item is exactly what multiplying its one-hot vector gives.
        self.item_in: nn.Parameter | None = None
        self.one_hot = not p.constrained_embedding and p.embedding == 0
        layers = sizes
        if p.constrained_embedding:
            n_input = sizes[-1]
        elif p.embedding:
            self.item_in = nn.Parameter(torch.empty(n_items, p.embedding))
            _init_uniform(self.item_in, n_items, p.embedding)
            n_input = p.embedding
        else:
            self.item_in = nn.Parameter(torch.empty(n_items, 3 * sizes[0]))
            _init_uniform(self.item_in, n_items, sizes[0])
            self.first_hidden = nn.Linear(sizes[0], 3 * sizes[0])
            _init_uniform(self.first_hidden.weight, sizes[0], sizes[0])
            nn.init.zeros_(self.first_hidden.bias)
            n_input, layers = sizes[0], sizes[1:]
        cells = []
        for size in layers:
            cell = nn.GRUCell(n_input, size)
            _init_uniform(cell.weight_ih, n_input, size)
            _init_uniform(cell.weight_hh, size, size)
            nn.init.zeros_(cell.bias_ih)
            nn.init.zeros_(cell.bias_hh)
            cells.append(cell)
            n_input = size
        self.cells = nn.ModuleList(cells)
        self.drop_embed = nn.Dropout(p.dropout_embed)
        self.drop_hidden = nn.Dropout(p.dropout_hidden)
        self.carry_dropout = p.carry_dropout

    def input_table(self) -> torch.Tensor:
        return self.item_out if self.item_in is None else self.item_in

    def dense_parameters(self) -> list[nn.Parameter]:
        """Parameters not indexed by item (those are trained row by row)."""
        tables = {id(self.item_out), id(self.item_bias), id(self.item_in)}
        return [q for q in self.parameters() if id(q) not in tables]

    def step(
        self, inputs: torch.Tensor, hidden: list[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One event per row, given as its row of ``input_table``: the output to score and the
        new hidden state of every layer."""
        new: list[torch.Tensor] = []
        if self.one_hot:
            # the one-hot input layer's output is the embedding, so the embedding dropout
            state = _gru_update(inputs, self.first_hidden(hidden[0]), hidden[0])
            x = self.drop_embed(state)
            new.append(x if self.carry_dropout else state)
        else:
            x = self.drop_embed(inputs)
        for cell, h in zip(self.cells, hidden[len(new) :], strict=True):
            state = cell(x, h)
            x = self.drop_hidden(state)
            new.append(x if self.carry_dropout else state)
        return x, new

    def zero_state(self, rows: int) -> list[torch.Tensor]:
        return [torch.zeros(rows, size) for size in self.sizes]
