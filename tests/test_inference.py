"""--mode=eval and --mode=predict on a run trained on local parallel text."""

import json
import os
import random
import shutil

import pytest
import sacrebleu
from test_run import final_json, run

from s2s_jax.training import checkpoint

WORDS = ["the", "cat", "dog", "sat", "ran", "on", "mat", "far", "red", "big"]


def _pairs(n, seed):
    rnd = random.Random(seed)
    pairs = []
    for _ in range(n):
        src = [rnd.choice(WORDS) for _ in range(rnd.randint(2, 5))]
        pairs.append((" ".join(src), " ".join(reversed(src))))
    return pairs


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("parallel")
    files = {}
    for split, n, seed in (("train", 400, 0), ("test", 40, 1)):
        files[split] = root / f"{split}.tsv"
        files[split].write_text("".join(f"{s}\t{t}\n" for s, t in _pairs(n, seed)))
    workdir = root / "run"
    code, out, err = run(
        workdir,
        "--dataset=parallel_text",
        f"--train_file={files['train']}",
        f"--test_file={files['test']}",
        "--steps=80",
        "--eval_every=80",
        "--checkpoint_every=80",
        "--learning_rate=0.01",
    )
    assert code == 0, err[-2000:]
    return workdir, files, final_json(out)


def test_eval_mode_reports_the_trained_test_metrics_and_pictures(trained):
    workdir, _, train_result = trained
    code, out, err = run(workdir, "--mode=eval")
    assert code == 0, err[-2000:]
    result = final_json(out)
    for key in ("exact_match", "token_accuracy", "bleu", "loss", "perplexity", "exposure_gap"):
        assert result[key] == pytest.approx(train_result[key], rel=1e-5, abs=1e-6), key
    assert result["exposure_gap"] == pytest.approx(
        result["token_accuracy"] - result["free_token_accuracy"]
    )
    assert os.path.getsize(workdir / "attention.png") > 5000
    assert os.path.getsize(workdir / "learning_curves.png") > 5000


def test_reported_bleu_equals_sacrebleu_on_the_predicted_file(trained, tmp_path):
    workdir, files, train_result = trained
    lines = files["test"].read_text().splitlines()
    sources = tmp_path / "src.txt"
    sources.write_text("".join(line.split("\t")[0] + "\n" for line in lines))
    hyps = tmp_path / "hyp.txt"
    code, out, err = run(workdir, "--mode=predict", f"--input={sources}", f"--output={hyps}")
    assert code == 0, err[-2000:]
    hypotheses = hyps.read_text().splitlines()
    references = [line.split("\t")[1] for line in lines]
    assert len(hypotheses) == len(references)
    bleu = sacrebleu.corpus_bleu(hypotheses, [references]).score
    assert bleu == pytest.approx(train_result["bleu"], rel=1e-6, abs=1e-9)


def test_predict_round_trips_a_file_with_empty_and_unknown_lines(trained, tmp_path):
    workdir, _, _ = trained
    source = tmp_path / "in.txt"
    source.write_bytes(b"the cat sat\n\nzebra quokka\nmat \xff far\n" + b"dog " * 40 + b"\n")
    out_path = tmp_path / "new" / "out.txt"  # its folder is made
    code, out, err = run(workdir, "--mode=predict", f"--input={source}", f"--output={out_path}")
    assert code == 0, err[-2000:]
    outputs = out_path.read_text().split("\n")
    assert len(outputs) == 6 and outputs[-1] == ""  # five lines, each newline-terminated
    assert outputs[1] == ""  # empty in, empty out
    assert all(o for i, o in enumerate(outputs[:5]) if i != 1)  # the others decode to something
    assert "not valid UTF-8" in err and "only the first" in err
    code, out, err = run(workdir, "--mode=predict", f"--input={source}", "--output=-", "--nbest=3")
    rows = [line.split("\t") for line in out.splitlines()]
    assert [int(r[0]) for r in rows] == [i for i in range(5) for _ in range(3)]
    scores = [float(r[2]) for r in rows[:3]]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(
    "io,message",
    [
        (("--input={tmp}", "--output=-"), "--input={tmp} is a directory; give a file or '-'"),
        (("--input={tmp}/none.txt", "--output=-"), "--input={tmp}/none.txt does not exist"),
        (("--input=-", "--output={tmp}"), "--output={tmp} is a directory; give a file path"),
    ],
)
def test_predict_rejects_paths_it_cannot_use(trained, tmp_path, io, message):
    workdir, _, _ = trained
    code, out, err = run(workdir, "--mode=predict", *(f.format(tmp=tmp_path) for f in io))
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("error: " + message.format(tmp=tmp_path))


def test_eval_and_predict_need_a_trained_workdir(tmp_path):
    code, out, err = run(tmp_path / "nothing", "--mode=eval")
    assert code == 2 and "config.json does not exist" in err.strip().splitlines()[-1]


def test_eval_takes_this_commands_decoding_flags_but_not_a_different_model(trained):
    workdir, _, train_result = trained
    code, out, err = run(
        workdir,
        "--mode=eval",
        "--config.train.beam_size=3",
        "--config.train.eval_batch_size=8",
        "--config.train.eval_max_examples=16",
    )
    assert code == 0, err[-2000:]
    result = final_json(out)
    assert (result["beam_size"], result["examples"]) == (3, 16)  # the --config flags applied
    assert train_result["examples"] == 40
    hidden = json.loads((workdir / "config.json").read_text())["model"]["hidden"]
    code, out, err = run(workdir, "--mode=predict", f"--hidden={hidden + 1}")
    assert code == 2
    assert err.strip().splitlines()[-1] == (
        f"error: model.hidden={hidden + 1} would change the trained model (it has {hidden}); "
        "--mode=predict uses the run's own model: drop that flag"
    )


def test_predict_gives_one_line_per_newline_terminated_input_line(trained, tmp_path):
    """A lone carriage return inside a line keeps it one line (bytes.splitlines split there), as
    do a form feed and a file separator (str.splitlines would split there); a CRLF ending is one
    line end."""
    workdir, _, _ = trained
    source = tmp_path / "in.txt"
    source.write_bytes(b"the cat\rsat\n\x0cdog\x1cran\nmat far\r\nred")  # last line unterminated
    out_path = tmp_path / "out.txt"
    code, out, err = run(workdir, "--mode=predict", f"--input={source}", f"--output={out_path}")
    assert code == 0, err[-2000:]
    assert final_json(out)["lines"] == 4
    assert len(out_path.read_text().split("\n")) == 5  # four lines, each newline-terminated


def test_eval_falls_back_from_a_damaged_best_checkpoint_and_checkpoint_step_picks_one(
    trained, tmp_path
):
    source, files, _ = trained
    workdir = tmp_path / "run"
    shutil.copytree(source, workdir)
    code, out, err = run(
        workdir,
        "--dataset=parallel_text",
        f"--train_file={files['train']}",
        f"--test_file={files['test']}",
        "--learning_rate=0.01",
        "--steps=120",
        "--eval_every=40",
        "--checkpoint_every=40",
    )
    assert code == 0, err[-2000:]
    ckpt = checkpoint.Checkpoints(str(workdir), keep=3, best_metric="exact_match")
    best, steps = ckpt.best_step(), ckpt.steps()
    ckpt.close()
    assert steps == [80, 120]
    other = ({80, 120} - {best}).pop()
    for root, _, files in os.walk(workdir / "checkpoints" / str(best) / "state"):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"garbage")
    code, out, err = run(workdir, "--mode=eval")
    assert code == 0, err[-2000:]
    assert "Traceback" not in err
    assert f"using checkpoint {other} instead of the best one, {best}, which cannot be" in err
    assert final_json(out)["step"] == other
    assert os.path.isdir(workdir / "checkpoints" / str(best))  # eval leaves the run as it is
    code, out, err = run(workdir, "--mode=eval", f"--checkpoint_step={other}")
    assert code == 0 and final_json(out)["step"] == other, err[-2000:]
    for step, message in (
        (best, f"checkpoint {best} in {workdir / 'checkpoints'} cannot be read"),
        (7, f"no checkpoint 7 in {workdir / 'checkpoints'}; choose one of [80, 120]"),
    ):
        code, out, err = run(workdir, "--mode=predict", f"--checkpoint_step={step}")
        assert code == 2 and "Traceback" not in err
        assert err.strip().splitlines()[-1].startswith(f"error: {message}"), err[-1000:]


def test_eval_ignores_an_optimizer_flag_that_decoding_never_uses(trained):
    """Clipping off changes the optimizer state's structure; the checkpoints must still read."""
    workdir, _, train_result = trained
    code, out, err = run(workdir, "--mode=eval", "--config.train.clip_norm=0")
    assert code == 0, err[-2000:]
    assert final_json(out)["exact_match"] == pytest.approx(train_result["exact_match"])
