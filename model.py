"""
model.py -- the network: a compact BERT/RoBERTa/ELECTRA encoder that loads real checkpoints.

Self-Evolution learning (SE) does not train a model from scratch: it *continues*
the masked-language-model (MLM) pretraining of an existing BERT or RoBERTa. So
the first thing the project needs is the network those checkpoints describe,
computing exactly the numbers the reference implementation computes, plus a way
to read and write their weight files. This file is that and nothing more:

  1. EncoderConfig       the fields of a Hugging Face config.json the network needs
  2. Encoder             embeddings + post-LayerNorm transformer layers
  3. MaskedLM            Encoder + MLM head (the head SE trains and questions;
                         ELECTRA's generator is one too)
  4. SequenceClassifier  Encoder + classification head (for fine-tuning), and
     Prompt, a deep prompt for prompt tuning with the encoder frozen
  5. Discriminator       Encoder + ELECTRA's replaced-token-detection head
  6. from_pretrained / save_pretrained, shared by the four classes; the
     files themselves (where a name points, reading, writing) are checkpoint.py's

ELECTRA (Clark et al. 2020, electra.py) is BERT's encoder with one change: its
embeddings may be narrower than the layers (embedding_size E < hidden_size H,
as in ELECTRA-Small), with a linear projection E -> H between them, so that a
small generator and the discriminator can share one set of embeddings.

The checkpoint's tokenizer is in tokenizer.py; a first look at what a
checkpoint predicts (fill-mask) is in probe.py.

Our module names are our own; a table maps them onto the Hugging Face names,
and every loaded tensor's shape is checked against the config.
"""

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import checkpoint

SUPPORTED_MODEL_TYPES = ("bert", "roberta", "electra")

# -----------------------------------------------------------------------------
# 1. Configuration


@dataclass
class EncoderConfig:
    """What the network needs from a Hugging Face BERT/RoBERTa/ELECTRA config.json."""

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
    embedding_size: int | None = None  # ELECTRA's embedding width E; None: hidden_size (BERT, RoBERTa)
    # Keys of config.json the network does not use; kept so that a saved
    # checkpoint carries them on to other tools unchanged.
    extra: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"unsupported model_type {self.model_type!r}; "
                             f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"unsupported hidden_act {self.hidden_act!r}; "
                             f"supported: {', '.join(ACTIVATIONS)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of "
                             f"num_attention_heads {self.num_attention_heads}")
        position = self.extra.get("position_embedding_type", "absolute")
        if position != "absolute":
            raise ValueError(f"unsupported position_embedding_type {position!r}; supported: 'absolute'")
        if self.model_type == "electra" and self.embedding_size is None:
            self.embedding_size = self.hidden_size
        if self.model_type != "electra" and self.embedding_width != self.hidden_size:
            raise ValueError(f"embedding_size {self.embedding_size} differs from hidden_size "
                             f"{self.hidden_size}: only model_type 'electra' projects its embeddings, "
                             f"not {self.model_type!r}")

    @classmethod
    def from_dict(cls, d: dict, **overrides) -> "EncoderConfig":
        names = {f.name for f in fields(cls)} - {"extra"}
        bad = set(overrides) - names
        if bad:
            raise TypeError(f"unknown config override(s): {', '.join(sorted(bad))}; "
                            f"known: {', '.join(sorted(names))}")
        d = dict(d)
        if d.get("model_type") == "electra":  # Hugging Face's ElectraConfig default, for a file without it
            d.setdefault("embedding_size", 128)
        if "id2label" in d:  # Hugging Face stores the label count as a label map
            d.setdefault("num_labels", len(d["id2label"]))
        known = {k: v for k, v in d.items() if k in names}
        extra = {k: v for k, v in d.items() if k not in names}
        known.update(overrides)
        relabelled = overrides.get("num_labels") is not None and "id2label" in extra
        # a new label set replaces the old map
        if relabelled and len(extra["id2label"]) != known["num_labels"]:
            extra.pop("id2label"), extra.pop("label2id", None)
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
    def embedding_width(self) -> int:
        """E, the width of the embeddings: ELECTRA's embedding_size, else the hidden width."""
        return self.hidden_size if self.embedding_size is None else self.embedding_size

    def as_electra(self) -> "EncoderConfig":
        """This BERT-layout network in ELECTRA's layout (the same encoder: absolute positions, token
        types, post-LayerNorm; a BERT config is an ELECTRA one with embedding_size == hidden_size)."""
        if self.model_type not in ("bert", "electra"):
            raise ValueError(f"a {self.model_type} model, where ELECTRA needs a BERT-layout encoder "
                             "(model_type bert or electra)")
        return EncoderConfig.from_dict({**self.to_dict(), "model_type": "electra",
                                        "embedding_size": self.embedding_width})

    @property
    def max_positions(self) -> int:
        """How many tokens a sequence may have: RoBERTa numbers its positions from
        pad_token_id + 1, so 514 embeddings serve 512 tokens."""
        return self.max_position_embeddings - (self.pad_token_id + 1 if self.model_type == "roberta" else 0)

    def to_dict(self) -> dict:
        d = dict(self.extra)
        d.update({f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"})
        if d["embedding_size"] is None:  # BERT and RoBERTa files have no such key
            del d["embedding_size"]
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
    """Token + position + segment embeddings, summed, then LayerNorm and dropout; E wide
    (the hidden width H, except in ELECTRA's layout, where the Encoder projects E -> H)."""

    def __init__(self, c: EncoderConfig):
        super().__init__()
        width = c.embedding_width
        self.word = nn.Embedding(c.vocab_size, width, padding_idx=c.pad_token_id)
        self.position = nn.Embedding(c.max_position_embeddings, width)
        self.token_type = nn.Embedding(c.type_vocab_size, width)
        self.norm = nn.LayerNorm(width, eps=c.layer_norm_eps)
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

    def forward(self, x, attn_mask, prefix=None):
        B, L, H = x.shape
        # (B, n, H) -> (B, heads, n, H/heads) for each of query, key, value
        heads = lambda t: t.view(B, -1, self.heads, H // self.heads).transpose(1, 2)
        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        if prefix is not None:
            # Deep prompt tuning (P-tuning v2): P trained key and value vectors of
            # this layer, (2, P, H), in front of the sequence's own: every token
            # attends to them, and they attend to nothing (they have no query).
            k = torch.cat([heads(prefix[0].expand(B, -1, -1)), k], dim=2)
            v = torch.cat([heads(prefix[1].expand(B, -1, -1)), v], dim=2)
            if attn_mask is not None:
                attn_mask = F.pad(attn_mask, (prefix.shape[1], 0), value=True)
        # `attn_mask` (B, 1, 1, keys) says which keys each query may attend to:
        # padding never is. PyTorch picks the fastest kernel for the device.
        dropout = self.attn_dropout if self.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)
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
    """from_pretrained / save_pretrained for the four classes below (section 6 of the docstring)."""

    architecture: dict  # model_type -> the Hugging Face class name this layout matches
    head_modules: tuple = ()  # task-head modules a checkpoint may lack: they start fresh
    head_name, head_training = "task", ""  # what the warning of a fresh head calls it, and what trains it

    @classmethod
    def from_pretrained(cls, path_or_id, **overrides):
        """A folder, a train.py run folder, 'minilm' or a hub id (checkpoint.resolve_checkpoint);
        `overrides` replace config fields (hidden_dropout_prob=0.0, num_labels=3)."""
        folder = checkpoint.resolve_checkpoint(path_or_id)
        config = EncoderConfig.from_json(folder / "config.json", **overrides)
        model = cls(config)
        weights, source = checkpoint.read_weights(folder)
        checkpoint.load_hf_weights(model, weights, source)
        return model.eval()

    def save_pretrained(self, out_dir):
        checkpoint.save_hf(self, out_dir)


class Encoder(Pretrained):
    """The body shared by every head: input ids -> one hidden vector per token."""

    architecture = {"bert": "BertModel", "roberta": "RobertaModel", "electra": "ElectraModel"}

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.embed = Embeddings(config)
        # ELECTRA: embeddings narrower than the layers are projected onto their width (E -> H)
        wide = config.embedding_width != config.hidden_size
        self.project = nn.Linear(config.embedding_width, config.hidden_size) if wide else None
        self.layers = nn.ModuleList(Layer(config) for _ in range(config.num_hidden_layers))
        self.apply(init_weights)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, prefix=None):
        """Hidden states (batch, length, hidden). `prefix`, (layers, 2, P, hidden): a deep prompt,
        P key and value vectors for every layer (see Prompt); None: the plain encoder."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        attn_mask = None if attention_mask is None else attention_mask.bool()[:, None, None, :]
        x = self.embed(input_ids, token_type_ids)
        if self.project is not None:
            x = self.project(x)
        for i, layer in enumerate(self.layers):
            x = layer(x, attn_mask, None if prefix is None else prefix[i])
        return x

    def hf_names(self):
        """Our module names -> Hugging Face module names (without the bert./roberta./electra. prefix)."""
        names = {"embed.word": "embeddings.word_embeddings",
                 "embed.position": "embeddings.position_embeddings",
                 "embed.token_type": "embeddings.token_type_embeddings", "embed.norm": "embeddings.LayerNorm",
                 "project": "embeddings_project"}
        layer = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
                 "attn_out": "attention.output.dense", "attn_norm": "attention.output.LayerNorm",
                 "ff_in": "intermediate.dense", "ff_out": "output.dense", "ff_norm": "output.LayerNorm"}
        for i in range(len(self.layers)):
            names.update({f"layers.{i}.{ours}": f"encoder.layer.{i}.{hf}" for ours, hf in layer.items()})
        return names


# -----------------------------------------------------------------------------
# 3. The MLM head: the part of the model that SE both questions and trains


class MaskedLM(Pretrained):
    """Encoder + MLM head: hidden -> dense -> activation -> LayerNorm -> vocabulary logits.

    The decoder is tied to the word embeddings (one matrix both reads and writes
    tokens) unless the config says otherwise. Projecting onto the vocabulary is
    the largest matrix product of a small model, and an MLM loss needs it only
    where a token is masked, so `forward` can project selected positions only.
    ELECTRA's generator is this model: its dense maps H onto the embedding
    width E, and its activation is gelu whatever the config's hidden_act.
    """

    architecture = {"bert": "BertForMaskedLM", "roberta": "RobertaForMaskedLM",
                    "electra": "ElectraForMaskedLM"}
    head_modules = ("dense", "norm", "decoder")
    head_name, head_training = "MLM", " (train.py --head-steps does it)"

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        width = config.embedding_width  # the decoder's input width: that of the word embeddings it is tied to
        self.dense = nn.Linear(config.hidden_size, width)
        self.norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(width, config.vocab_size)
        self.act = ACTIVATIONS["gelu" if config.model_type == "electra" else config.hidden_act]
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
            names.update({"dense": "cls.predictions.transform.dense",
                          "norm": "cls.predictions.transform.LayerNorm",
                          "decoder": "cls.predictions.decoder", "decoder.bias": "cls.predictions.bias"})
        elif self.config.model_type == "electra":
            names.update({"dense": "generator_predictions.dense", "norm": "generator_predictions.LayerNorm",
                          "decoder": "generator_lm_head"})
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
    ELECTRA: dropout -> dense -> gelu -> dropout -> out_proj (its authors' gelu).
    All are dense -> activation -> out; RoBERTa and ELECTRA add a dropout before the dense.
    num_labels == 1 means regression (one score per input).
    """

    architecture = {"bert": "BertForSequenceClassification", "roberta": "RobertaForSequenceClassification",
                    "electra": "ElectraForSequenceClassification"}
    head_modules = ("dense", "out")
    head_name = "classification"

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.num_labels)
        p = config.hidden_dropout_prob if config.classifier_dropout is None else config.classifier_dropout
        self.drop = nn.Dropout(p)
        self.drop_first = nn.Dropout(p) if config.model_type in ("roberta", "electra") else nn.Identity()
        self.act = F.gelu if config.model_type == "electra" else torch.tanh
        self.apply(init_weights)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, prefix=None):
        first = self.encoder(input_ids, attention_mask, token_type_ids, prefix)[:, 0]
        return self.out(self.drop(self.act(self.dense(self.drop_first(first)))))

    def head(self) -> dict:
        """The classification head's parameters by name (what prompt tuning trains besides the prompt)."""
        return {f"{part}.{name}": p for part in ("dense", "out")
                for name, p in getattr(self, part).named_parameters()}

    def hf_names(self):
        names = {f"encoder.{k}": v for k, v in self.encoder.hf_names().items()}
        if self.config.model_type == "bert":
            names.update({"dense": "pooler.dense", "out": "classifier"})
        else:
            names.update({"dense": "classifier.dense", "out": "classifier.out_proj"})
        return names


class Prompt(nn.Module):
    """A deep prompt: P trained key and value vectors in front of every layer's attention.

    This is P-tuning v2 (Liu et al. 2022), which Vega v2 and PANDA use: the
    encoder stays frozen and only the prompt (and a task head) learn, so a
    task costs layers * 2 * P * hidden numbers instead of a whole model
    (92,160 for MiniLM with P = 20). Initialised as P-tuning v2 does, from
    N(0, 1), unless taken from another task's prompt (prompt transfer). The
    draw has a generator of its own, seeded: a prompt's start depends on its
    seed and shape only, so it can be drawn again to see what training changed.
    """

    def __init__(self, config: EncoderConfig, length: int = 20, seed: int = 0):
        super().__init__()
        shape = (config.num_hidden_layers, 2, length, config.hidden_size)
        self.prefix = nn.Parameter(self.start(shape, seed))

    @staticmethod
    def start(shape, seed: int) -> torch.Tensor:
        """The random start of a prompt of this shape and seed: N(0, 1), the same at every call."""
        return torch.randn(shape, generator=torch.Generator().manual_seed(seed))

    def forward(self):
        return self.prefix


# -----------------------------------------------------------------------------
# 5. ELECTRA's discriminator: one logit per token, "was this token replaced?"


class Discriminator(Pretrained):
    """Encoder + replaced-token detection head: hidden -> dense (H -> H) -> hidden_act -> one logit.

    The model ELECTRA keeps (electra.py trains it against a small generator).
    Any BERT-layout checkpoint starts it: an ELECTRA discriminator, or a BERT
    such as MiniLM, whose encoder is ELECTRA's with E == H; a checkpoint
    without this head gets a fresh one, with a warning. Loaded, it is an
    ELECTRA model (model_type "electra"), and saved, an ElectraForPreTraining
    that finetune.py and Hugging Face transformers load as one.
    """

    architecture = {"electra": "ElectraForPreTraining"}
    head_modules = ("dense", "prediction")
    head_name, head_training = "discriminator", " (train.py --objective electra trains it with the rest)"

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config = config.as_electra()  # a BERT config: the same encoder, in ELECTRA's layout
        self.encoder = Encoder(config)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.prediction = nn.Linear(config.hidden_size, 1)
        self.act = ACTIVATIONS[config.hidden_act]
        self.apply(init_weights)

    @classmethod
    def from_pretrained(cls, path_or_id, **overrides):
        """As Pretrained.from_pretrained, from a bert or electra checkpoint; any other is refused."""
        folder = checkpoint.resolve_checkpoint(path_or_id)
        config = EncoderConfig.from_json(folder / "config.json", **overrides)
        try:
            model = cls(config)
        except ValueError as e:
            raise ValueError(f"{folder}: {e}") from None
        weights, source = checkpoint.read_weights(folder)
        # A BERT file's names carry its own prefix (bert.), which loading as ELECTRA would not take off.
        weights = {name.removeprefix(config.model_type + "."): w for name, w in weights.items()}
        checkpoint.load_hf_weights(model, weights, source)
        return model.eval()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        """One logit per token (batch, length): above 0, the token is taken for a replaced one."""
        h = self.encoder(input_ids, attention_mask, token_type_ids)
        return self.prediction(self.act(self.dense(h))).squeeze(-1)

    def hf_names(self):
        names = {f"encoder.{k}": v for k, v in self.encoder.hf_names().items()}
        names.update({"dense": "discriminator_predictions.dense",
                      "prediction": "discriminator_predictions.dense_prediction"})
        return names
