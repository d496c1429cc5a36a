"""tokenizer.py: the checkpoint's own ids and word pieces, from tokenizer.json or the older vocabulary
files."""

import json
import shutil

import torch

from checkpoint import resolve_checkpoint
from tokenizer import Tokenizer


def test_tokenizer_ids_come_from_the_checkpoint():
    tok = Tokenizer("minilm")
    assert (tok.cls_id, tok.sep_id, tok.pad_id, tok.mask_id, tok.unk_id) == (101, 102, 0, 103, 100)
    assert tok.special_ids == [0, 100, 101, 102, 103]
    assert tok.vocab_size == 30522
    ids = tok.encode_plain(["self-evolution tokenizes"])[0]
    pieces = tok.tokens(ids)
    assert tok.continuation[ids].tolist() == [p.startswith("##") for p in pieces]
    assert any(p.startswith("##") for p in pieces)


def test_wordpiece_from_vocab_txt_matches_tokenizer_json(tmp_path):
    src = resolve_checkpoint("minilm")
    for f in ("vocab.txt", "config.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(src / f, tmp_path)
    text = ["The capital of France is Paris.", "Self-evolution MASKS the tokens [MASK] the model finds hard."]
    a = Tokenizer("minilm")(text, ["a pair", "another one"])
    b = Tokenizer(tmp_path)(text, ["a pair", "another one"])
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_byte_level_bpe_from_vocab_and_merges(tmp_path):
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4,
             "a": 5, "b": 6, "\u0120": 7, "\u0120a": 8, "ab": 9, "\u0120ab": 10}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n\u0120 a\na b\n\u0120a b\n")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "roberta", "pad_token_id": 1}))
    tok = Tokenizer(tmp_path)
    assert (tok.cls_id, tok.sep_id, tok.pad_id, tok.mask_id) == (0, 2, 1, 4)
    batch = tok(["ab ab", "a"])
    assert batch["input_ids"].tolist() == [[0, 9, 10, 2], [0, 5, 2, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert tok.continuation[[9, 10, 8, 0]].tolist() == [True, False, False, False]


def test_pairs_are_truncated_longest_first():
    tok = Tokenizer("minilm")
    long, short = "one two three four five six seven eight nine ten", "alpha beta"
    ids = tok([long], [short], max_length=10)["input_ids"][0].tolist()
    assert len(ids) == 10
    assert tok.decode(ids).endswith("alpha beta")  # the short side is kept whole


def test_tokenizer_save_round_trip(tmp_path):
    tok = Tokenizer("minilm")
    tok.save_pretrained(tmp_path)
    shutil.copy(resolve_checkpoint("minilm") / "config.json", tmp_path)
    again = Tokenizer(tmp_path)
    assert again.mask_id == tok.mask_id and again.special_ids == tok.special_ids
    assert torch.equal(again(["a test sentence"])["input_ids"], tok(["a test sentence"])["input_ids"])
