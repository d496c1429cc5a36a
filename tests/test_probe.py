"""probe.py: fill-mask, the fixed held-out masks, and what self-questioning sees."""

import html
import json
import warnings
from html.parser import HTMLParser

import pytest
import torch

import data
import probe
import runtime
import self_evolution as se
from masking import apply_mask, labels_for, random_mask, score_tokens, select_informative, special_tokens_mask
from model import EncoderConfig, MaskedLM
from tokenizer import Tokenizer

CPU = runtime.Machine(torch.device("cpu"))


def test_fill_mask_and_command(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MaskedLM.from_pretrained("minilm")
    tok = Tokenizer("minilm")
    out = probe.fill_mask(model, tok, "Paris is the <mask> of France and [MASK] too.", k=3)
    assert len(out) == 2 and all(len(f) == 3 for f in out)
    assert all(f[0][1] >= f[1][1] >= f[2][1] for f in out)
    with pytest.raises(ValueError, match="no mask token"):
        probe.fill_mask(model, tok, "no mask here")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probe.main(["--model", "minilm", "--fresh-head-ok", "--top-k", "2", "The [MASK] is blue."])
    assert "mask 1:" in capsys.readouterr().out


@pytest.fixture
def tiny(tiny_checkpoint, tiny_corpus, tmp_path):
    model = MaskedLM.from_pretrained(tiny_checkpoint)
    tok = Tokenizer(tiny_checkpoint)
    _, heldout, _ = data.load_corpus(str(tiny_corpus), tok, 32, 64, 0.1, tmp_path / "cache")
    return model, tok, heldout


def test_random_masks_are_fixed(tiny):
    _, tok, heldout = tiny
    masks = probe.random_masks(tok, heldout, 10, 4, torch.device("cpu"))
    assert [len(c) for c, _ in masks] == [4, 4, 2]
    generator = torch.Generator().manual_seed(probe.EVAL_SEED)  # one generator, batch after batch
    for rows, (corrupted, labels) in zip(([0, 1, 2, 3], [4, 5, 6, 7], [8, 9]), masks):
        ids = heldout.batch(rows)
        maskable = ~special_tokens_mask(ids, tok)
        expected = random_mask(ids, maskable, tok.mask_id, tok.vocab_size, 0.15, generator)
        assert torch.equal(corrupted, expected[0]) and torch.equal(labels, expected[1])


def test_hardest_masks_are_the_top_15_percent_whatever_the_method_s_rule(tiny):
    model, tok, heldout = tiny
    masks = probe.hardest_masks(se.Method(score="entropy"), model, tok, heldout, 8, 4, CPU)
    other_rule = se.Method(score="entropy", select="threshold", ratio=0.5, informative_fraction=0.2)
    other_masks = probe.hardest_masks(other_rule, model, tok, heldout, 8, 4, CPU)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(masks, other_masks))
    generator = torch.Generator().manual_seed(probe.EVAL_SEED)
    for rows, (corrupted, labels) in zip(([0, 1, 2, 3], [4, 5, 6, 7]), masks):
        ids = heldout.batch(rows)
        with torch.no_grad():
            scores = score_tokens(model(ids), ids, "entropy")
        selected = select_informative(scores, ~special_tokens_mask(ids, tok), 0.15, generator=generator)
        assert torch.equal(corrupted, apply_mask(ids, selected, tok.mask_id))
        assert torch.equal(labels, labels_for(ids, selected))


class TokenSpans(HTMLParser):
    """The token spans of a score page (those with a title): their attributes, in order."""

    def __init__(self, text):
        super().__init__()
        self.spans = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "span" and "title" in dict(attrs):
            self.spans.append(dict(attrs))


def test_the_picks_and_the_score_page_show_the_rule_s_selection(tiny, tmp_path):
    model, tok, heldout = tiny
    method = se.Method(ratio=0.3)
    text = probe.show_picks(method, model, tok, "the old cat saw a dog near the river .", CPU)
    picks, highest = text.splitlines()
    assert picks.startswith("self-questioning picks (loss score, brackets): [CLS] ")
    ids = tok("the old cat saw a dog near the river .")["input_ids"]
    scores = score_tokens(se.question(model, ids), ids, "loss")
    chosen = se.select(method, se.rule_input(method, model, tok, ids, torch.Generator().manual_seed(0)))
    assert picks.count("[") - 2 == chosen.sum() == 3  # 30% of 10 tokens; [CLS] and [SEP] are not picks
    assert highest.startswith(f"  highest scores: {tok.tokens([ids[0, scores[0, 1:-1].argmax() + 1]])[0]} ")
    page = tmp_path / "scores.html"
    probe.write_score_page(method, model, tok, heldout, CPU, page, n=2, name="tiny-bert")
    text = page.read_text()
    spans = TokenSpans(text).spans
    assert len(spans) == 2 * 32 * 2  # two blocks of 32 tokens, a row of loss and a row of entropy
    blocks = heldout.batch([0, 1])
    picked = se.select(method, se.rule_input(method, model, tok, blocks, torch.Generator().manual_seed(0)))
    assert sum("text-decoration:underline" in s["style"] for s in spans) == 2 * picked.sum() > 0
    # the rows' values are the two scores of the first block's tokens, in order
    with torch.no_grad():
        logits = model(blocks)
    for row, kind in enumerate(("loss", "entropy")):
        expected = score_tokens(logits, blocks, kind)[0, 1:-1]
        shown = [float(s["title"].split()[1]) for s in spans[row * 32 + 1:(row + 1) * 32 - 1]]
        assert shown == pytest.approx(expected.tolist(), abs=1e-3)
    shown = html.unescape(text)
    assert "tiny-bert" in shown
    assert "picked by self-questioning (the top 30% of a passage's tokens by the loss score)" in shown


def first_then_last(batch):
    """A curriculum rule: the first candidate of each row before half-way, the last one after."""
    order = batch.maskable.long().cumsum(-1)
    wanted = 1 if batch.progress < 0.5 else batch.maskable.sum(-1, keepdim=True)
    return batch.maskable & (order == wanted)


CURRICULUM = se.Method(masking_fn="curriculum.py:first_then_last", rule=first_then_last)
SAMPLES = ["the old cat saw a dog near the river .", "the cats saw birds ."]  # cats, birds: two pieces


def test_a_rule_of_your_own_shows_its_picks_at_a_progress_and_names_the_scores(tiny):
    model, tok, _ = tiny
    start = probe.show_picks(CURRICULUM, model, tok, SAMPLES[0], CPU).splitlines()
    end = probe.show_picks(CURRICULUM, model, tok, SAMPLES[0], CPU, progress=1.0).splitlines()
    assert start[0] == ("curriculum.py:first_then_last picks (brackets): "
                        "[CLS] [the] old cat saw a dog near the river . [SEP]")
    assert end[0] == ("curriculum.py:first_then_last picks at progress 1 (brackets): "
                      "[CLS] the old cat saw a dog near the river [.] [SEP]")
    assert start[1].startswith("  highest loss scores (the built-in score; your rule may use others): ")
    assert start[1] == end[1]  # the same model: the same scores, whatever the progress


def test_method_start_and_end_show_the_picks_of_every_sample_before_and_after(tiny, tmp_path, capsys):
    model, tok, heldout = tiny
    hard = probe.method_start(CURRICULUM, model, tok, heldout, CPU, tmp_path, n=4, batch_size=4, name="tiny",
                              samples=SAMPLES)
    printed = capsys.readouterr().out.splitlines()
    assert hard is not None and (tmp_path / probe.HARDEST).is_file()
    assert [line.split(": ")[1] for line in printed if " picks " in line] == [
        "[CLS] [the] old cat saw a dog near the river . [SEP]", "[CLS] [the] cat ##s saw bird ##s . [SEP]"]
    page = (tmp_path / "scores.html").read_text()
    assert "picked by your rule curriculum.py:first_then_last" in page and "(the rule's score)" not in page
    text = probe.method_end(CURRICULUM, model, tok, CPU, step=7, samples=SAMPLES)
    assert capsys.readouterr().out.strip() == text
    lines = text.splitlines()
    assert lines[0] == "the method's end (step 7): the trained model's picks, at progress 1"
    assert [line.split(": ")[1] for line in lines if " picks at progress 1 " in line] == [
        "[CLS] the old cat saw a dog near the river [.] [SEP]", "[CLS] the cat ##s saw bird ##s [.] [SEP]"]
    # the built-in rule: the same header without a progress, its own picks; random masking shows none
    assert probe.method_end(se.Method(), model, tok, CPU, step=7, samples=SAMPLES[0]).startswith(
        "the method's end (step 7): the trained model's picks\nself-questioning picks (loss score, brackets)")
    assert probe.method_end(se.Method(masking="random"), model, tok, CPU, step=7, samples=SAMPLES) == ""
    with pytest.raises(TypeError, match="expected a sentence or a list of sentences"):
        probe.method_end(se.Method(), model, tok, CPU, step=7, samples=[])


# ----------------------------------------------------------------- BLiMP by pseudo-log-likelihood

BLIMP_DATA = data.DEFAULT_DATA_ROOT / "blimp"


def test_batched_pll_equals_one_masked_forward_per_token(tiny_checkpoint):
    model, tok = MaskedLM.from_pretrained(tiny_checkpoint), Tokenizer(tiny_checkpoint)
    sentences = ["the cat saw a dog .", "a big king took the old bird near the river .", "dogs ran .",
                 "the cat saw a bird ."]  # two of one length: one batch for them
    batched = probe.pseudo_log_likelihoods(model, tok, sentences, CPU, tokens_per_batch=20)
    for sentence, pll in zip(sentences, batched):
        ids = tok(sentence)["input_ids"][0]
        expected = 0.0
        for i in range(1, len(ids) - 1):  # every token but [CLS] and [SEP], one forward each
            masked = ids.clone()
            masked[i] = tok.mask_id
            with torch.no_grad():
                expected += model(masked[None])[0, i].log_softmax(-1)[ids[i]].item()
        assert pll == pytest.approx(expected, abs=1e-5)


class Prefers(torch.nn.Module):
    """A stand-in masked LM whose guess is the same at every position: it likes some tokens."""

    def __init__(self, vocab_size, liked):
        super().__init__()
        self.bias = torch.zeros(vocab_size)
        self.bias[liked] = 5.0
        self.config = EncoderConfig(vocab_size=vocab_size)  # its positions: 512

    def forward(self, input_ids, positions=None):
        return self.bias.expand(len(positions), -1)


def test_blimp_accuracy_on_pairs_whose_answer_is_known(tmp_path, tiny_checkpoint, blimp_files):
    tok = Tokenizer(tiny_checkpoint)
    model = Prefers(tok.vocab_size, [tok.tok.token_to_id("cat")])
    blimp_files(tmp_path, {
        "always": ("syntax", [("the cat sat .", "the dog sat ."), ("a cat ran .", "a bird ran .")]),
        "half": ("syntax/semantics", [("the cat sat .", "the dog sat ."),
                                      ("the dog sat .", "the cat sat .")]),
        "never": ("semantics", [("a bird sat .", "a cat sat .")]),
    })
    report = probe.blimp(model, tok, probe.read_blimp(tmp_path), CPU)
    assert report["paradigms"] == {"always": 1.0, "half": 0.5, "never": 0.0}
    assert report["accuracy"] == pytest.approx(0.5)  # the mean over paradigms, not over pairs
    assert report["fields"] == {"semantics": 0.0, "syntax": 1.0, "syntax_semantics": 0.5}
    assert report["correct"]["half"] == [1, 0] and report["pairs"] == 5
    assert [len(p["pairs"]) for p in probe.read_blimp(tmp_path, 1).values()] == [1, 1, 1]  # the first N


def test_malformed_blimp_files_are_named_with_their_line(tmp_path):
    folder = tmp_path / "blimp"
    with pytest.raises(FileNotFoundError, match="no BLiMP files"):
        probe.read_blimp(tmp_path)
    folder.mkdir()
    good = json.dumps({"sentence_good": "a", "sentence_bad": "b", "field": "syntax", "UID": "x"})
    for text, message in [(good + "\n{oops\n", r"x.jsonl:2: invalid JSON"),
                          (json.dumps({"sentence_good": "a", "field": "syntax", "UID": "x"}) + "\n",
                           r"x.jsonl:1: expected an object with the strings sentence_good, sentence_bad"),
                          ("", r"x.jsonl: no pairs \(the file is empty\)")]:
        (folder / "x.jsonl").write_text(text)
        with pytest.raises(ValueError, match=message):
            probe.read_blimp(tmp_path)


@pytest.mark.skipif(not BLIMP_DATA.is_dir(), reason=f"no BLiMP data in {BLIMP_DATA} (../shared, beside)")
def test_the_real_blimp_files():
    paradigms = probe.read_blimp(None, 3)
    assert len(paradigms) == 67 and all(len(p["pairs"]) == 3 for p in paradigms.values())
    fields = {p["field"] for p in paradigms.values()}
    assert fields == {"morphology", "semantics", "syntax", "syntax_semantics"}
    first = json.loads((BLIMP_DATA / "adjunct_island.jsonl").read_text().splitlines()[0])
    assert paradigms["adjunct_island"]["pairs"][0] == (first["sentence_good"], first["sentence_bad"])


def test_probe_command_blimp_and_text(tmp_path, tiny_checkpoint, tiny_blimp, tiny_corpus, capsys):
    out = tmp_path / "probe.json"
    probe.main(["--model", str(tiny_checkpoint), "--blimp", "--data-root", str(tiny_blimp),
                "--precision", "fp32", "--pairs-per-paradigm", "2", "--text", str(tiny_corpus),
                "--block-length", "32", "--blocks", "8", "--json", str(out), "--quiet"])
    printed = capsys.readouterr().out
    assert "BLiMP: " in printed and "(mean over 2 paradigms, 4 pairs" in printed and "MLM loss" in printed
    results = json.loads(out.read_text())
    assert set(results["blimp"]["paradigms"]) == {"noun_number", "word_order"}
    assert 0 <= results["blimp"]["accuracy"] <= 1
    assert set(results["blimp"]["fields"]) == {"morphology", "syntax"}
    assert results["text"]["blocks"] == 8 and results["text"]["mlm_loss"] > 0
