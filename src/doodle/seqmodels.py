"""Stroke-sequence networks, registered beside the timm models (`model.name: seq_gru`).

Input: `seq` (B, L, F) from `sequence.encode_sequences` and `seq_len` (B,). 1D convolutions read local
pen movement, a bidirectional GRU reads the order of the whole drawing (packed, so padding is never
seen), and masked mean + max pooling feed the classifier.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from doodle.config import Config
from doodle.sequence import N_FEATURES


class SeqGRU(nn.Module):
    input_kind = "sequence"

    def __init__(self, n_features: int, n_classes: int, conv: int = 128, hidden: int = 192, layers: int = 2,
                 dropout: float = 0.2):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(n_features, conv, 5, padding=2), nn.BatchNorm1d(conv), nn.ReLU(inplace=True),
            nn.Conv1d(conv, conv, 5, padding=2), nn.BatchNorm1d(conv), nn.ReLU(inplace=True),
            nn.Conv1d(conv, conv, 3, padding=1), nn.BatchNorm1d(conv), nn.ReLU(inplace=True),
        )
        self.rnn = nn.GRU(conv, hidden, num_layers=layers, batch_first=True, bidirectional=True,
                          dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(4 * hidden, n_classes))

    def forward(self, seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        mask = (torch.arange(seq.shape[1], device=seq.device)[None, :] < seq_len[:, None]).unsqueeze(-1)
        x = self.conv((seq * mask).transpose(1, 2)).transpose(1, 2)
        packed = pack_padded_sequence(x, seq_len.cpu().clamp(min=1), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=seq.shape[1])
        m = mask.to(out.dtype)
        mean = (out * m).sum(1) / m.sum(1).clamp(min=1)
        mx = out.masked_fill(~mask, float("-inf")).max(1).values
        return self.head(torch.cat([mean, mx], dim=1))


def _seq_gru(cfg: Config, n_classes: int, in_chans: int) -> nn.Module:
    n_features = N_FEATURES + (1 if cfg.seq.time else 0)
    allowed = {"conv", "hidden", "layers", "dropout"}
    bad = set(cfg.model.kwargs) - allowed
    if bad:
        raise ValueError(f"model.kwargs: unknown key(s) {sorted(bad)} for seq_gru (valid: {sorted(allowed)})")
    return SeqGRU(n_features, n_classes, **cfg.model.kwargs)


_seq_gru.input_kind = "sequence"


def register_all(register) -> None:
    register("seq_gru")(_seq_gru)
