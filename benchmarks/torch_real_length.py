"""The real-length benchmark's PyTorch side: variable lengths the way a PyTorch user writes them.

A bidirectional nn.LSTM encoder over pack_padded_sequence (padding is never read), the dense
bridge (tanh(Linear) of the final states into the decoder's (h, c)), Bahdanau attention masked
to the real source positions with the previous top h as query, an nn.LSTMCell decoder loop over
the batch's own longest target whose input is [embedding; context] and whose output layer reads
[h; context], scheduled sampling with one Bernoulli draw per example and step (argmax of the
previous step's detached logits, or a categorical draw by Gumbel-max, the fastest way in
PyTorch: one pass over the logits, no softmax and no torch.multinomial), and cross-entropy over
the real target positions only (ignore_index=pad). Used by real_length.py.
"""

import torch
import torch.nn.functional as F
import torch_sampling
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

PAD_ID, BOS_ID = 0, 1


class Seq2Seq(nn.Module):
    def __init__(self, src_vocab: int, tgt_vocab: int, emb: int, hidden: int):
        super().__init__()
        dec = 2 * hidden  # the decoder is as wide as the bidirectional encoder's outputs
        self.src_embed = nn.Embedding(src_vocab, emb, padding_idx=PAD_ID)
        self.tgt_embed = nn.Embedding(tgt_vocab, emb, padding_idx=PAD_ID)
        self.encoder = nn.LSTM(emb, hidden, batch_first=True, bidirectional=True)
        self.bridge = nn.Linear(4 * hidden, 2 * dec)  # [c_f, c_b, h_f, h_b] -> (h, c)
        self.query = nn.Linear(dec, dec, bias=False)
        self.key = nn.Linear(dec, dec)
        self.v = nn.Parameter(torch.randn(dec) / dec**0.5)
        self.cell = nn.LSTMCell(emb + dec, dec)
        self.out = nn.Linear(2 * dec, tgt_vocab)

    def forward(self, inputs, inputs_len, targets, p: float, sample_from: str):
        batch, steps = targets.shape
        packed = pack_padded_sequence(
            self.src_embed(inputs), inputs_len.clamp(min=1), batch_first=True, enforce_sorted=False
        )
        packed_out, (h_n, c_n) = self.encoder(packed)
        memory, _ = pad_packed_sequence(
            packed_out, batch_first=True, total_length=inputs.shape[1]
        )  # [B, S, 2H]
        mask = torch.arange(inputs.shape[1])[None] < inputs_len[:, None]  # [B, S]
        flat = torch.cat([c_n[0], c_n[1], h_n[0], h_n[1]], -1)
        h, c = torch.tanh(self.bridge(flat)).chunk(2, -1)
        keys = self.key(memory)  # [B, S, A]
        gold = torch.cat([targets.new_full((batch, 1), BOS_ID), targets[:, :-1]], 1)
        logits, all_logits = None, []
        for t in range(steps):
            tokens = gold[:, t]
            if t > 0 and p > 0:
                prev = logits.detach()
                if sample_from == "argmax":
                    sampled = prev.argmax(-1)
                else:
                    sampled = torch_sampling.gumbel(prev)
                tokens = torch.where(torch.rand(batch) < p, sampled, tokens)
            scores = torch.tanh(keys + self.query(h)[:, None]) @ self.v  # [B, S]
            weights = F.softmax(scores.masked_fill(~mask, float("-inf")), -1)
            context = torch.bmm(weights[:, None], memory)[:, 0]  # [B, 2H]
            h, c = self.cell(torch.cat([self.tgt_embed(tokens), context], -1), (h, c))
            logits = self.out(torch.cat([h, context], -1))  # [B, V]
            all_logits.append(logits)
        return torch.stack(all_logits, 1)  # [B, T, V]


def train_step(net, opt, batch, p: float, sample_from: str) -> float:
    """One Adam step on a batch dict of int64 tensors (inputs, inputs_len, targets)."""
    logits = net(batch["inputs"], batch["inputs_len"], batch["targets"], p, sample_from)
    loss = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), batch["targets"].reshape(-1), ignore_index=PAD_ID
    )
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss.detach())
