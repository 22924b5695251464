"""Categorical draws from a batch of logits, the ways a PyTorch user writes them.

Each maps detached logits [B, V] to token ids [B], one draw per row from softmax(logits).
torch_baseline.py's --categorical chooses one (compare.py times them side by side), so that no
speed ratio rests on a slow primitive of one way; torch_real_length.py uses Gumbel-max.
"""

import torch
import torch.nn.functional as F


def multinomial(logits):
    return torch.multinomial(F.softmax(logits, -1), 1)[:, 0]


def gumbel(logits):
    # Gumbel-max: argmax(logits + Gumbel noise) is a draw from softmax(logits); one pass over the
    # logits, no softmax and no torch.multinomial. The clamp keeps log(0) out.
    noise = -torch.log(-torch.log(torch.rand_like(logits).clamp_min(1e-20)))
    return (logits + noise).argmax(-1)


def inverse_cdf(logits):
    # The first index whose cumulative probability exceeds a uniform draw; the clamp catches a
    # draw rounded past the last cumulative value.
    cdf = torch.cumsum(F.softmax(logits, -1), -1)  # [B, V]
    u = torch.rand(logits.shape[0], 1, device=logits.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u)[:, 0].clamp_(max=logits.shape[-1] - 1)


SAMPLERS = {"multinomial": multinomial, "gumbel": gumbel, "inverse_cdf": inverse_cdf}
