"""The same seq2seq model written the way a PyTorch user would, timed like train_throughput.py.

  pip install -r benchmarks/requirements.txt   # torch==2.13.0, CPU build
  python benchmarks/torch_baseline.py [--bridge=dense] [--sampling_prob=0.25] [--steps=20]
      [--sample_from=categorical --categorical=gumbel] [--precision=bfloat16]

Eager PyTorch on --device (cpu, or cuda), torch.set_num_threads(--threads), OpenMP threads that
sleep rather than spin while
they wait (OMP_WAIT_POLICY=PASSIVE unless the environment sets it: on a machine shared with other
work, spinning made steps 2x slower, and tiny models 100x slower):
- encoder: nn.Embedding + nn.LSTM/nn.GRU (fused, all layers) over the whole source;
- bridges: `BRIDGES`, an (init, apply) pair per s2s_jax.models.bridges.BRIDGES entry, e.g. dense
  (tanh(Linear) of the encoder final state, all (c, h) of all layers concatenated, split over the
  decoder state); --bridge=attention is dense's initial state, then Bahdanau attention over the
  encoder outputs at every step, query = previous top h, context concatenated to the input and
  to the output;
- decoder: with --sampling_prob=0 and no attention, one nn.LSTM/nn.GRU call over the whole gold
  target; otherwise a Python loop of nn.LSTMCell/nn.GRUCell, where at every step t >= 1 each
  example reads, with probability p (torch.rand per example), a token drawn from the previous
  step's detached float32 logits (argmax, or a categorical draw: torch_sampling.SAMPLERS,
  --categorical) instead of the gold one;
- loss: F.cross_entropy over all steps' logits; torch.optim.Adam; zero_grad, backward, step;
- --precision=bfloat16: the forward pass and the loss under torch.autocast(dtype=bfloat16), the
  way PyTorch's documentation trains in mixed precision (parameters and Adam stay float32).

Prints one JSON line with the keys of train_throughput.py (compile_s is 0: nothing is compiled).
"""

import os
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from absl import app, flags

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read once, when torch loads OpenMP
import torch  # pylint: disable=g-import-not-at-top
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_sampling  # pylint: disable=g-import-not-at-top

import common  # pylint: disable=g-import-not-at-top

common.define_flags()
flags.DEFINE_integer("threads", 2, "torch.set_num_threads")
flags.DEFINE_enum(
    "device",
    "cpu",
    ["cpu", "cuda"],
    "where the model runs; on cuda, float32 matmuls may use TF32 "
    "(torch.set_float32_matmul_precision('high')), as JAX's default precision does "
    "on GPUs",
)
flags.DEFINE_float("learning_rate", 1e-3, "adam learning rate")
flags.DEFINE_enum(
    "categorical",
    "gumbel",
    list(torch_sampling.SAMPLERS),
    "how --sample_from=categorical draws: Gumbel-max on the logits, inverse CDF (cumsum and "
    "searchsorted) or torch.multinomial of the softmax; compare.py --torch_categoricals times "
    "them side by side",
)
FLAGS = flags.FLAGS

BOS_ID = 1


# --- bridges: init adds the bridge's modules to the model, apply maps the flat encoder state
# [B, enc_total] to (the decoder's flat initial state [B, dec_total], per-step inputs or None).
def _no_modules(model, enc_total, dec_total):
    del model, enc_total, dec_total


def _zeros(model, flat):
    return flat.new_zeros(flat.shape[0], model.layers * model.tensors * model.dec_hidden)


def _zero_apply(model, flat):
    return _zeros(model, flat), None


def _copy_init(model, enc_total, dec_total):
    del model
    if enc_total != dec_total:
        raise ValueError("bridge 'copy' needs equal encoder and decoder states")


def _copy_apply(model, flat):
    del model
    return flat, None


def _dense_init(model, enc_total, dec_total):
    model.proj = nn.Linear(enc_total, dec_total)


def _dense_apply(model, flat):
    return torch.tanh(model.proj(flat)), None


def _concat_init(model, enc_total, dec_total):
    del enc_total, dec_total  # one projection per layer and state tensor
    model.proj = nn.ModuleList(
        [
            nn.Linear(model.hidden, model.dec_hidden - model.hidden)
            for _ in range(model.layers * model.tensors)
        ]
    )


def _concat_apply(model, flat):
    parts = torch.split(flat, model.hidden, dim=-1)  # _flat_state's tensors, in order
    return torch.cat(
        [torch.cat([x, torch.tanh(p(x))], -1) for x, p in zip(parts, model.proj)], -1
    ), None


def _concat_inputs_apply(model, flat):
    return _zeros(model, flat), flat


class TorchBridge(NamedTuple):
    init: Callable  # (model, enc_total, dec_total) -> None
    apply: Callable  # (model, flat [B, enc_total]) -> (flat initial state, step inputs or None)


# One entry per s2s_jax.models.bridges.BRIDGES name (tests/test_benchmarks.py checks them).
BRIDGES = {
    "zero": TorchBridge(_no_modules, _zero_apply),
    "copy": TorchBridge(_copy_init, _copy_apply),
    "dense": TorchBridge(_dense_init, _dense_apply),
    "concat": TorchBridge(_concat_init, _concat_apply),
    "concat_inputs": TorchBridge(_no_modules, _concat_inputs_apply),
}


class Seq2Seq(nn.Module):
    """Encoder, bridge and decoder of s2s_jax's model, in eager PyTorch."""

    def __init__(self, vocab, emb, hidden, dec_hidden, layers, cell, bridge, fused_decoder):
        super().__init__()
        self.cell, self.layers = cell, layers
        self.attends = bridge == common.ATTENTION_BRIDGE  # Bahdanau over dense's initial state
        self.bridge = BRIDGES[common.initial_bridge(bridge)]
        self.hidden, self.dec_hidden = hidden, dec_hidden
        self.tensors = 2 if cell == "lstm" else 1  # (c, h) or (h,)
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        rnn_cell = nn.LSTMCell if cell == "lstm" else nn.GRUCell
        self.src_embed = nn.Embedding(vocab, emb)
        self.tgt_embed = nn.Embedding(vocab, emb)
        self.encoder = rnn(emb, hidden, num_layers=layers, batch_first=True)
        enc_total = layers * self.tensors * hidden
        dec_total = layers * self.tensors * dec_hidden
        self.bridge.init(self, enc_total, dec_total)
        context = hidden if self.attends else 0
        fixed = common.BRIDGE_COSTS[common.initial_bridge(bridge)].step_inputs(enc_total)
        if self.attends:
            self.attn_query = nn.Linear(dec_hidden, dec_hidden, bias=False)
            self.attn_key = nn.Linear(hidden, dec_hidden)
            self.attn_v = nn.Parameter(torch.randn(dec_hidden) / dec_hidden**0.5)
        in_dim = emb + context + fixed
        self.fused = fused_decoder
        if fused_decoder:
            self.decoder = rnn(in_dim, dec_hidden, num_layers=layers, batch_first=True)
        else:
            self.cells = nn.ModuleList(
                [rnn_cell(in_dim if l == 0 else dec_hidden, dec_hidden) for l in range(layers)]
            )
        self.out = nn.Linear(dec_hidden + context, vocab)

    def _flat_state(self, final):
        if self.cell == "lstm":
            h, c = final  # [L, B, H] each
            return torch.cat([t for l in range(self.layers) for t in (c[l], h[l])], dim=-1)
        return torch.cat([final[l] for l in range(self.layers)], dim=-1)

    def _split_state(self, flat):
        """[B, L * tensors * Hd] -> per layer (h, c) for LSTM cells, or h for GRU cells."""
        parts = torch.split(flat, self.dec_hidden, dim=-1)
        if self.cell == "lstm":
            return [
                (parts[2 * l + 1].contiguous(), parts[2 * l].contiguous())
                for l in range(self.layers)
            ]
        return [parts[l].contiguous() for l in range(self.layers)]

    def forward(self, src, tgt, p, draw):
        batch, steps = tgt.shape
        enc_out, final = self.encoder(self.src_embed(src))  # [B, S, H]
        flat = self._flat_state(final)  # [B, enc_total]
        initial, fixed = self.bridge.apply(self, flat)  # [B, dec_total], [B, D] or None
        state = self._split_state(initial)
        gold = torch.cat([tgt.new_full((batch, 1), BOS_ID), tgt[:, :-1]], 1)  # [B, T]
        if self.fused:
            x = self.tgt_embed(gold)  # [B, T, E]
            if fixed is not None:
                x = torch.cat([x, fixed[:, None].expand(-1, steps, -1)], -1)
            if self.cell == "lstm":
                h0 = torch.stack([h for h, _ in state])
                c0 = torch.stack([c for _, c in state])
                out, _ = self.decoder(x, (h0, c0))
            else:
                out, _ = self.decoder(x, torch.stack(state))
            return self.out(out)  # [B, T, V]
        keys = self.attn_key(enc_out) if self.attends else None  # [B, S, A]
        logits_all = []
        logits = None
        for t in range(steps):
            tokens = gold[:, t]
            if t > 0 and p > 0:
                fed = torch.rand(batch, device=tgt.device) < p
                sampled = draw(logits.detach().float())  # [B]
                tokens = torch.where(fed, sampled, tokens)
            parts = [self.tgt_embed(tokens)]
            if keys is not None:
                query = state[-1][0] if self.cell == "lstm" else state[-1]
                scores = torch.tanh(keys + self.attn_query(query)[:, None]) @ self.attn_v
                weights = F.softmax(scores, dim=-1)  # [B, S]
                context = torch.bmm(weights[:, None], enc_out)[:, 0]  # [B, H]
                parts.append(context)
            if fixed is not None:
                parts.append(fixed)
            x = torch.cat(parts, -1) if len(parts) > 1 else parts[0]
            new_state = []
            for layer, cell in enumerate(self.cells):
                s = cell(x, state[layer])
                new_state.append(s)
                x = s[0] if self.cell == "lstm" else s
            state = new_state
            out = x if keys is None else torch.cat([x, context], -1)
            logits = self.out(out)  # [B, V]
            logits_all.append(logits)
        return torch.stack(logits_all, 1)


def _sync(device: str):
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_peak_gflops(device: str, dtype: torch.dtype, repeats: int = 10) -> float:
    n = 8192 if device == "cuda" else 2048  # big enough to reach the device's rate
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def main(argv):
    del argv
    common.tune_malloc()
    torch.set_num_threads(FLAGS.threads)
    device = FLAGS.device
    if device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("error: --device=cuda but torch sees no CUDA device; use --device=cpu")
        torch.set_float32_matmul_precision("high")
    torch.manual_seed(FLAGS.seed)
    dtype = getattr(torch, FLAGS.precision)
    peak_before = matmul_peak_gflops(device, dtype)  # and after the steps, as train_throughput.py
    if FLAGS.sample_from == "argmax":
        draw = lambda logits: logits.argmax(-1)  # noqa: E731
    else:
        draw = torch_sampling.SAMPLERS[FLAGS.categorical]
    p = FLAGS.sampling_prob
    fused = p == 0 and FLAGS.bridge != common.ATTENTION_BRIDGE
    dec_hidden = common.decoder_hidden(FLAGS.bridge, FLAGS.hidden, FLAGS.decoder_hidden)
    model = Seq2Seq(
        FLAGS.vocab,
        FLAGS.emb,
        FLAGS.hidden,
        dec_hidden,
        FLAGS.layers,
        FLAGS.cell,
        FLAGS.bridge,
        fused,
    ).to(device)
    param_count = sum(x.numel() for x in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=FLAGS.learning_rate)
    rs = np.random.RandomState(FLAGS.seed)
    batches = [
        tuple(
            torch.from_numpy(a).long().to(device)
            for a in common.random_token_arrays(
                rs, FLAGS.batch, FLAGS.src_len, FLAGS.tgt_len, FLAGS.vocab
            )
        )
        for _ in range(4)
    ]

    times = []
    for i in range(FLAGS.warmup + FLAGS.steps):
        if i == FLAGS.warmup:
            usage = common.process_usage()
        src, tgt = batches[i % len(batches)]
        start = time.perf_counter()
        opt.zero_grad()
        with torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
            logits = model(src, tgt, p, draw)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1))
        loss.backward()
        opt.step()
        loss_value = loss.item()  # the step's result on the host, like block_until_ready
        if i >= FLAGS.warmup:
            times.append(time.perf_counter() - start)
    usage = tuple(b - a for a, b in zip(usage, common.process_usage()))
    if not np.isfinite(loss_value):
        raise RuntimeError(f"the loss is not finite: {loss_value}")
    peak = max(peak_before, matmul_peak_gflops(device, dtype))
    common.report(
        "torch",
        times,
        0.0,
        param_count,
        peak,
        usage,
        final_loss=round(loss_value, 4),
        categorical=FLAGS.categorical if FLAGS.sample_from == "categorical" else None,
        device=device,
        matmul_precision=torch.get_float32_matmul_precision(),
        threads=torch.get_num_threads(),
        torch_version=torch.__version__,
        omp_wait_policy=os.environ["OMP_WAIT_POLICY"],
        decoder="nn." + ("LSTM" if FLAGS.cell == "lstm" else "GRU") if fused else "cell loop",
    )


if __name__ == "__main__":
    app.run(main)
