"""One GRU4Rec training step: shared negatives, the losses over a step's columns, and Adagrad
with momentum updating only the item rows the step used."""

from __future__ import annotations

import numpy as np

from recsys_lite.models.gru4rec_net import GRU4RecNet
from recsys_lite.models.gru4rec_params import GRU4RecParams
from recsys_lite.models.torch_runtime import load_torch

load_torch()  # before the first `import torch` (see torch_runtime)

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

SAMPLE_CACHE_FLOATS = 1_000_000  # negatives drawn per refill of the sample cache


class NegativeSampler:
    """Draws the shared negatives of each step from popularity ** alpha, a cache at a time."""

    def __init__(
        self, weights: np.ndarray, n_sample: int, rng: np.random.Generator, cache_floats: int
    ) -> None:
        cumulative = np.cumsum(weights, dtype=np.float64)
        self.cdf = cumulative / cumulative[-1]
        self.n_sample = n_sample
        self.rng = rng
        self.rows = max(1, cache_floats // max(n_sample, 1))
        self.cache = torch.zeros(0, n_sample, dtype=torch.int64)
        self.next_row = 0

    def draw(self) -> torch.Tensor:
        if self.next_row >= len(self.cache):
            uniform = self.rng.random((self.rows, self.n_sample))
            drawn = np.searchsorted(self.cdf, uniform, side="right")
            self.cache = torch.from_numpy(np.minimum(drawn, len(self.cdf) - 1).astype(np.int64))
            self.next_row = 0
        row = self.cache[self.next_row]
        self.next_row += 1
        return row


class AdagradM:
    """Adagrad with momentum, the official GRU4Rec optimiser.

    Item matrices are updated row-wise: only the rows a step used change, their accumulators
    included, as with sparse gradients (dense updates would touch every item row every step).
    """

    def __init__(self, lr: float, momentum: float, eps: float = 1e-6) -> None:
        self.lr = lr
        self.momentum = momentum
        self.eps = eps
        self.sums: dict[int, torch.Tensor] = {}
        self.velocity: dict[int, torch.Tensor] = {}

    @staticmethod
    def _slot(slots: dict[int, torch.Tensor], param: torch.Tensor) -> torch.Tensor:
        if id(param) not in slots:
            slots[id(param)] = torch.zeros_like(param)
        return slots[id(param)]

    @torch.no_grad()
    def dense(self, param: torch.Tensor, grad: torch.Tensor) -> None:
        sums = self._slot(self.sums, param).addcmul_(grad, grad)
        update = grad / (sums + self.eps).sqrt_() * self.lr
        if self.momentum > 0:
            update = self._slot(self.velocity, param).mul_(self.momentum).add_(update)
        param.sub_(update)

    @torch.no_grad()
    def rows(self, param: torch.Tensor, rows: torch.Tensor, grad: torch.Tensor) -> None:
        """Update the given (distinct) rows of ``param`` with their gradient."""
        all_sums = self._slot(self.sums, param)
        sums = all_sums.index_select(0, rows).addcmul_(grad, grad)
        all_sums.index_copy_(0, rows, sums)
        update = grad / (sums + self.eps).sqrt_() * self.lr
        if self.momentum > 0:
            velocity = self._slot(self.velocity, param)
            update = velocity.index_select(0, rows).mul_(self.momentum).add_(update)
            velocity.index_copy_(0, rows, update)
        param.index_add_(0, rows, update, alpha=-1.0)


def leaf_rows(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """A copy of some rows of a parameter that collects their gradient on its own."""
    # index_select: several times faster than advanced indexing for whole rows
    return table.detach().index_select(0, rows).requires_grad_()


def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    counts: torch.Tensor,
    log_q: torch.Tensor | None,
    mask_hits: bool,
) -> torch.Tensor:
    """Softmax cross-entropy over a step's columns, with each distinct item scored once.

    ``logits`` are rows x distinct items and ``counts`` (distinct items) how often each item
    is a column: an item drawn k times enters the softmax denominator k times. With
    ``mask_hits`` the row's own target enters once, as the positive, and not as a negative.
    """
    log_counts = counts.log()
    offset = log_counts if log_q is None else log_counts - log_q
    adjusted = logits + offset  # the one pass over rows x items before the softmax
    rows = torch.arange(len(logits))
    positive = adjusted[rows, target] - log_counts[target]
    if mask_hits:
        adjusted[rows, target] = positive
    return (torch.logsumexp(adjusted, dim=1) - positive).sum()


def bpr_max(
    logits: torch.Tensor,
    target: torch.Tensor,
    counts: torch.Tensor,
    mask_hits: bool,
    bpreg: float,
    elu_param: float,
) -> torch.Tensor:
    """BPR against each negative, weighted by the softmax of the negatives' scores, plus the
    softmax-weighted squared scores of the negatives (Hidasi & Karatzoglou 2018)."""
    if elu_param > 0:
        logits = F.elu(logits, alpha=elu_param)
    rows = torch.arange(len(logits))
    positive = logits[rows, target]
    adjusted = logits + counts.log()
    # The row's own column is never its negative; with ``mask_hits`` its copies are not either.
    copies = torch.zeros_like(positive) if mask_hits else counts[target] - 1.0
    adjusted[rows, target] = positive + copies.log()
    has_negative = torch.isfinite(adjusted).any(dim=1)
    weights = torch.softmax(adjusted, dim=1).nan_to_num(0.0)
    ranking = (weights * torch.sigmoid(positive[:, None] - logits)).sum(dim=1)
    regulariser = (weights * logits * logits).sum(dim=1)
    per_row = -torch.log(ranking + 1e-24) + bpreg * regulariser
    return torch.where(has_negative, per_row, torch.zeros_like(per_row)).sum()


def log_q_correction(
    p: GRU4RecParams, session_items: np.ndarray, popularity: np.ndarray
) -> torch.Tensor:
    """Log of the expected count of each item among one step's scored columns.

    The in-batch targets come from the data distribution, the shared negatives from
    popularity ** alpha; both put an item among the columns more often the more popular
    it is, which the logQ correction takes back out of its softmax score.
    """
    targets = np.bincount(session_items, minlength=len(popularity)).astype(np.float64)
    expected = p.batch_size * targets / targets.sum()
    if p.n_sample > 0:
        sampled = popularity**p.sample_alpha
        expected += p.n_sample * sampled / sampled.sum()
    return torch.from_numpy(np.log(np.maximum(expected, 1e-12)).astype(np.float32))


def step_loss(
    p: GRU4RecParams,
    net: GRU4RecNet,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    hidden: list[torch.Tensor],
    sampler: NegativeSampler | None,
    log_q: torch.Tensor | None,
) -> tuple[torch.Tensor, list[torch.Tensor], list[tuple[nn.Parameter, torch.Tensor, torch.Tensor]]]:
    """Loss of one session-parallel step, the hidden state it leaves, and the gathered
    item rows (parameter, row indices, leaf copy) whose gradients update those rows."""
    columns = targets if sampler is None else torch.cat([targets, sampler.draw()])
    # Each distinct item is gathered and scored once, and counted as often as it is a
    # column: the loss of scoring every column, for a fraction of the work, since popular
    # items recur among the samples. Constrained inputs share the gather.
    shared = net.item_in is None
    n = len(inputs) if shared else 0
    unique, inverse = torch.unique(
        torch.cat([inputs, columns]) if shared else columns, return_inverse=True
    )
    out_rows = leaf_rows(net.item_out, unique)
    bias_rows = leaf_rows(net.item_bias, unique)
    gathered = [(net.item_out, unique, out_rows), (net.item_bias, unique, bias_rows)]
    if shared:
        embedded = out_rows.index_select(0, inverse[:n])
    else:
        assert net.item_in is not None
        unique_in, inverse_in = torch.unique(inputs, return_inverse=True)
        in_rows = leaf_rows(net.item_in, unique_in)
        gathered.append((net.item_in, unique_in, in_rows))
        embedded = in_rows.index_select(0, inverse_in)
    output, hidden = net.step(embedded, hidden)
    logits = torch.addmm(bias_rows, output, out_rows.T)
    target = inverse[n : n + len(inputs)]  # the first columns are the rows' own targets
    counts = torch.bincount(inverse[n:], minlength=len(unique)).to(logits.dtype)
    if p.loss == "cross-entropy":
        q = None if log_q is None else p.logq * log_q[unique]
        loss = cross_entropy(logits, target, counts, q, p.mask_accidental_hits)
    else:
        loss = bpr_max(logits, target, counts, p.mask_accidental_hits, p.bpreg, p.elu_param)
    # Summed over the rows and divided by the full width, as the official code does, so the
    # narrow last steps of an epoch do not weigh more per event.
    return loss / p.batch_size, hidden, gathered


def train_step(
    p: GRU4RecParams,
    net: GRU4RecNet,
    optimizer: AdagradM,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    hidden: list[torch.Tensor],
    sampler: NegativeSampler | None,
    log_q: torch.Tensor | None,
) -> tuple[float, list[torch.Tensor]]:
    loss, hidden, gathered = step_loss(p, net, inputs, targets, hidden, sampler, log_q)
    loss.backward()  # type: ignore[no-untyped-call]
    for param in net.dense_parameters():
        if param.grad is not None:
            optimizer.dense(param, param.grad)
            param.grad = None
    for param, rows, leaf in gathered:
        if leaf.grad is not None:
            optimizer.rows(param, rows, leaf.grad)
    # The state entering the next step is a constant: gradients flow back one step only.
    return float(loss.detach()), [h.detach() for h in hidden]
