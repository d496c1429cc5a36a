"""
tokenizer.py -- the checkpoint's own tokenizer, and the token ids masking needs.

Masking works on token ids, so it needs to know a few of them: the mask token
that replaces a hidden one, the padding, the special tokens that are never
masked ([CLS]/[SEP] for BERT, <s>/</s> for RoBERTa), and which vocabulary
entries continue the previous word (for whole-word masking). All of these are
read from the checkpoint's own files, never written into the code, so BERT's
[MASK] and RoBERTa's <mask> both work. The tokenizing itself is the Rust
`tokenizers` library's, loaded from the checkpoint's tokenizer.json or built
from the older vocab.txt (WordPiece) or vocab.json + merges.txt (byte-level BPE).
"""

import json
from pathlib import Path

import torch

from checkpoint import atomic_write, resolve_checkpoint
from model import EncoderConfig


class Tokenizer:
    """A thin wrapper around a `tokenizers.Tokenizer` loaded from a checkpoint folder.

    Masking needs a few ids (mask, pad, specials) and which vocabulary entries
    continue a word (for whole-word masking); these are read from the
    checkpoint's files, never hard-coded, so BERT's [MASK] and RoBERTa's <mask>
    both work.
    """

    DEFAULTS = {
        "bert": dict(cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", mask_token="[MASK]",
                     unk_token="[UNK]"),
        "electra": dict(cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", mask_token="[MASK]",
                        unk_token="[UNK]"),  # ELECTRA's vocabulary is BERT's
        "roberta": dict(cls_token="<s>", sep_token="</s>", pad_token="<pad>", mask_token="<mask>",
                        unk_token="<unk>"),
    }

    def __init__(self, folder, model_type=None):
        from tokenizers import Tokenizer as HFTokenizer

        folder = resolve_checkpoint(folder)
        if model_type is None:
            model_type = EncoderConfig.from_json(folder / "config.json").model_type
        self.folder, self.model_type = folder, model_type
        names = dict(self.DEFAULTS[model_type])
        for f in ("tokenizer_config.json", "special_tokens_map.json"):  # later files win, as in transformers
            if (folder / f).is_file():
                for k, v in json.loads((folder / f).read_text(encoding="utf-8")).items():
                    if k in names and v:
                        names[k] = v["content"] if isinstance(v, dict) else v
        if (folder / "tokenizer.json").is_file():
            tok = HFTokenizer.from_file(str(folder / "tokenizer.json"))
        elif model_type in ("bert", "electra") and (folder / "vocab.txt").is_file():
            tok = self._wordpiece(folder, names)
        elif (model_type == "roberta" and (folder / "vocab.json").is_file()
              and (folder / "merges.txt").is_file()):
            tok = self._byte_level_bpe(folder, names)
        else:
            need = "vocab.json and merges.txt" if model_type == "roberta" else "vocab.txt"
            raise FileNotFoundError(f"{folder}: no tokenizer; expected tokenizer.json or {need}")
        tok.no_padding()
        tok.no_truncation()
        self.tok = tok
        self._plain = None  # encode_plain's copy, made when first needed
        ids = {}
        for k, token in names.items():
            ids[k] = tok.token_to_id(token)
            if ids[k] is None:
                raise ValueError(f"{folder}: the tokenizer has no {k} {token!r}")
        self.mask_token = names["mask_token"]
        self.cls_id, self.sep_id, self.pad_id = ids["cls_token"], ids["sep_token"], ids["pad_token"]
        self.mask_id, self.unk_id = ids["mask_token"], ids["unk_token"]
        added = self.tok.get_added_tokens_decoder()
        self.special_ids = sorted(set(ids.values()) | {i for i, t in added.items() if t.special})
        self.vocab_size = tok.get_vocab_size(with_added_tokens=True)
        self.continuation = self._continuation()

    @staticmethod
    def _wordpiece(folder, names):
        from tokenizers import (Tokenizer as HFTokenizer, decoders, models, normalizers, pre_tokenizers,
                                processors)

        cfg = folder / "tokenizer_config.json"
        lower = json.loads(cfg.read_text()).get("do_lower_case", True) if cfg.is_file() else True
        tok = HFTokenizer(models.WordPiece.from_file(str(folder / "vocab.txt"), unk_token=names["unk_token"]))
        tok.normalizer = normalizers.BertNormalizer(lowercase=lower)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        cls, sep = names["cls_token"], names["sep_token"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:1 {sep}:1",
            special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))])
        tok.add_special_tokens(list(names.values()))
        return tok

    @staticmethod
    def _byte_level_bpe(folder, names):
        from tokenizers import Tokenizer as HFTokenizer, decoders, models, pre_tokenizers, processors

        tok = HFTokenizer(models.BPE.from_file(str(folder / "vocab.json"), str(folder / "merges.txt")))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        cls, sep = names["cls_token"], names["sep_token"]
        tok.post_processor = processors.RobertaProcessing((sep, tok.token_to_id(sep)),
                                                          (cls, tok.token_to_id(cls)))
        tok.add_special_tokens(list(names.values()))
        return tok

    def _continuation(self) -> torch.Tensor:
        """True for vocabulary entries that continue the previous word."""
        model = json.loads(self.tok.to_str())["model"]
        table = torch.zeros(self.vocab_size, dtype=torch.bool)
        for token, i in self.tok.get_vocab(with_added_tokens=False).items():
            if model["type"] == "WordPiece":
                table[i] = token.startswith(model.get("continuing_subword_prefix") or "##")
            elif model["type"] == "BPE":
                # byte-level BPE marks a word start by a leading space, shown as 'Ġ'
                table[i] = not token.startswith("\u0120")
            else:  # SentencePiece marks word starts with '▁'
                table[i] = not token.startswith("\u2581")
        table[self.special_ids] = False
        return table

    def __call__(self, texts, pairs=None, max_length=None):
        """Tokenize a batch (with the checkpoint's special tokens), right-pad, return tensors.

        With `max_length`, pairs are cut longest side first.
        """
        if isinstance(texts, str):
            texts = [texts]
        if max_length:
            self.tok.enable_truncation(max_length, strategy="longest_first")
        try:
            enc = self.tok.encode_batch(list(zip(texts, pairs)) if pairs is not None else list(texts))
        finally:
            self.tok.no_truncation()
        L = max(len(e.ids) for e in enc)
        out = {"input_ids": torch.full((len(enc), L), self.pad_id, dtype=torch.long),
               "attention_mask": torch.zeros(len(enc), L, dtype=torch.long),
               "token_type_ids": torch.zeros(len(enc), L, dtype=torch.long)}
        for i, e in enumerate(enc):
            n = len(e.ids)
            out["input_ids"][i, :n] = torch.tensor(e.ids)
            out["attention_mask"][i, :n] = 1
            out["token_type_ids"][i, :n] = torch.tensor(e.type_ids)
        return out

    def encode_plain(self, texts) -> list[list[int]]:
        """Token ids of text, for many texts at once (corpus building): no special tokens added, and
        none read from the text either. A corpus that writes "[MASK]" or "<pad>" means those
        characters; read as the special ids, they would be inputs the model never trains to predict
        (masking leaves special tokens alone), unannounced. So a copy of the tokenizer that encodes
        special-token strings as plain text does it (a copy: fill-mask needs its [MASK])."""
        if self._plain is None:
            self._plain = type(self.tok).from_str(self.tok.to_str())
            self._plain.encode_special_tokens = True
        return [e.ids for e in self._plain.encode_batch(list(texts), add_special_tokens=False)]

    def tokens(self, ids) -> list[str]:
        return [self.tok.id_to_token(int(i)) for i in ids]

    def decode(self, ids) -> str:
        return self.tok.decode([int(i) for i in ids])

    def save_pretrained(self, out_dir):
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "tokenizer.json", lambda p: self.tok.save(str(p)))
        special_ids = (("cls_token", self.cls_id), ("sep_token", self.sep_id), ("pad_token", self.pad_id),
                       ("mask_token", self.mask_id), ("unk_token", self.unk_id))
        names = {k: self.tok.id_to_token(i) for k, i in special_ids}
        atomic_write(out / "special_tokens_map.json",
                     lambda p: p.write_text(json.dumps(names, indent=2) + "\n"))
