"""Left-padded batches of token id sequences, as every batched forward pass in kositp builds them.

Generation and scoring batch prompts of different lengths by right-aligning them: each row's last
token sits in the last column, so the next token of every row is predicted at the same position.
Position ids count only real tokens, so padding never shifts a row's positions (and its output is
the same alone or in a batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class LeftPadded:
    input_ids: torch.Tensor  # (rows, width), pad_id left of each row's tokens
    attention_mask: torch.Tensor  # 1 on real tokens, 0 on padding
    position_ids: torch.Tensor  # 0.. over each row's real tokens; 0 on padding

    @property
    def width(self) -> int:
        return int(self.input_ids.shape[1])


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> LeftPadded:
    """Stack `sequences` into one left-padded batch (at least one sequence, none empty)."""
    import torch

    if not sequences or any(len(s) == 0 for s in sequences):
        raise ValueError("left_pad needs at least one sequence and no empty one")
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, ids in enumerate(sequences):
        input_ids[row, width - len(ids):] = torch.tensor(list(ids), dtype=torch.long)
        attention[row, width - len(ids):] = 1
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    return LeftPadded(input_ids, attention, positions)
