"""The default experiment: attention bridge on the embedded `reverse` task.

  python run.py                                   # train, then evaluate on test
  python run.py --bridge=dense --workdir=/tmp/w   # any field has an alias flag, or:
  python run.py --config=experiments/default.py:tiny --config.train.steps=50
  python run.py --config=experiments/default.py:translate   # real-text shapes, no download

Expected: test exact match >= 0.99 in under 5 minutes on a 2-core CPU. `tiny` is a seconds-long
smoke run for tests and CI; `translate` the translation-like task, whose sentence lengths,
vocabulary and alignments are shaped like a sentence-level translation corpus.
"""

import ml_collections

from s2s_jax import data


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.data = data.default_config()  # dataset, files, tokenizer, lengths, vocabulary, synthetic task

    m = c.model = ml_collections.ConfigDict()
    m.emb = 64  # E, source and target embedding size
    m.hidden = 128  # encoder H per direction
    m.cell = "lstm"  # encoder cell: lstm | gru
    m.layers = 1  # encoder layers
    m.bidirectional = True  # bidirectional encoder (decoder hidden = 2 * hidden by default)
    m.decoder_cell = ""  # '' = the encoder's cell
    m.decoder_hidden = 0  # 0 = the width the bridge needs (bridges.Bridge.decoder_width): the
    # encoder output width (directions * hidden); twice it for concat (also as attention_init)
    m.decoder_layers = 0  # 0 = the encoder's depth
    # A name in s2s_jax/models/bridges.py BRIDGES (no attention), or "attention": attention of
    # attention_type over the initial state of bridge attention_init (model.ModelConfig
    # .from_experiment reads this spelling; the two attention_* fields count only under it).
    m.bridge = "attention"
    m.attention_type = "bahdanau"  # s2s_jax/models/attention.py ATTENTION: bahdanau | dot | ...
    m.attention_init = "dense"  # the initial state's bridge, a name in BRIDGES
    m.attention_dim = 0  # Bahdanau hidden size; 0 = decoder hidden
    m.attention_normalize = False  # weight-normalised Bahdanau
    m.dropout = 0.0  # between stacked layers
    m.sampling_mode = "embedding"  # embedding (sampled token ids) | output (fed-back vectors)
    m.sample_from = "categorical"  # embedding mode: categorical | argmax
    m.temperature = 1.0  # categorical sampling / soft embedding temperature
    m.next_inputs = "softmax_embedding"  # output mode, of the logits: softmax_embedding | dense |
    # identity (TF's next_inputs_fn=None; needs emb == the target vocabulary size)
    m.output_gradient = False  # output mode: backpropagate through the fed-back vector
    # Matmuls: float32 | bfloat16 (bfloat16 operands, float32 accumulation: CPU AMX, GPU tensor
    # cores, TPU); parameters, optimizer, cell states, softmaxes and the loss stay float32.
    m.precision = "float32"

    s = c.sampling = ml_collections.ConfigDict()
    s.schedule = "inverse_sigmoid"  # constant | linear | exponential | inverse_sigmoid
    s.probability = 0.25  # constant value, or the cap the decaying schedules approach
    # Each schedule's own parameters (s2s_jax/models/sampling.py); the others ignore them.
    s.linear_start = 1.0  # linear: eps (the gold-token probability) at step 0
    s.linear_slope = 1e-3  # linear: eps decrease per step (p reaches 0.25 at step 250)
    s.linear_floor = 0.0  # linear: eps floor
    s.exponential_base = 0.999  # exponential: eps = base ** step, base < 1 (0.25 at step 288)
    s.inverse_sigmoid_k = 150.0  # inverse_sigmoid: eps = k / (k + exp(step / k)), k >= 1

    t = c.train = ml_collections.ConfigDict()
    t.seed = 0  # parameter init, dropout and sampling keys (folded with the step)
    t.batch_size = 64  # global batch, split over all devices and hosts
    t.batch_type = "sentences"  # what batch_size counts: sentences | tokens (the padded target
    # positions a batch may hold, so long-sentence buckets take fewer rows: OpenNMT-py's)
    t.steps = 1500  # optimizer steps
    t.learning_rate = 3e-3  # peak learning rate (Adam)
    t.warmup_steps = 100  # linear warm-up to the peak
    t.decay = "cosine"  # after warm-up: cosine (to 10% of peak) | constant
    t.clip_norm = 1.0  # global gradient-norm clipping; 0 = off
    t.label_smoothing = 0.0
    t.log_every = 50  # training rows in metrics.jsonl and the progress line
    t.eval_every = 500  # validation evaluation (and best-checkpoint bookkeeping)
    t.checkpoint_every = 500  # orbax checkpoint interval; a final one is always written
    t.keep_checkpoints = 3  # latest checkpoints kept (the best by best_metric is kept too)
    t.best_metric = "exact_match"  # validation metric that picks the best checkpoint (the
    # highest; loss and perplexity: the lowest; checkpoint.BEST_MODES)
    t.eval_batch_size = 250  # evaluation batch (a multiple of the device count)
    t.eval_max_examples = 0  # evaluate on at most this many examples per split; 0 = all
    t.beam_size = 1  # decoding beam for evaluation and predict (1 = greedy)
    t.length_penalty = "gnmt"  # beam ranking: gnmt ((5+len)/6)^alpha | average | none
    t.length_alpha = 0.6  # the GNMT alpha

    p = c.parallel = ml_collections.ConfigDict()
    p.coordinator_address = ""  # host:port of process 0 for multi-host runs ('' = single host)
    p.num_processes = 1  # processes in a multi-host run
    p.process_id = 0  # this process's index

    if arg == "tiny":  # a seconds-long smoke run on a few hundred examples
        c.data.synthetic.update(num_train=512, num_valid=64, num_test=64, max_length=6)
        c.data.max_len = 8
        m.update(emb=16, hidden=16)
        t.update(
            batch_size=16,
            steps=40,
            log_every=10,
            eval_every=20,
            checkpoint_every=20,
            eval_batch_size=32,
            warmup_steps=5,
        )
        s.inverse_sigmoid_k = 10.0
    elif arg == "translate":  # real-text shapes: the translation-like task (data/translate_task.py)
        c.data.dataset = "translate"
        c.data.synthetic.update(
            num_train=29000,
            num_valid=1000,
            num_test=1000,
            min_length=3,
            max_length=45,
            alphabet_size=4000,
        )  # mean 13.7 words, 4k words
        c.data.max_len = 64  # sources up to 45 words, their targets up to about 60
        c.data.buckets = "auto"  # batches of 8, 16, ... 64 positions: real text is mostly short
        t.update(batch_size=128, best_metric="bleu")
    elif arg:
        raise ValueError(
            f"unknown variant {arg!r} of experiments/default.py; use '', 'tiny' or 'translate'"
        )
    return c
