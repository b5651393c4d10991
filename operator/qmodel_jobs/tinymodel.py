"""A tiny Llama-architecture model trained locally on CPU, for tests, the demo and CPU benchmarks.

Nothing is downloaded: the text is the Python standard library's own source (the interpreter's lib dir), the
tokenizer is byte-level and trained here, the model has a few hundred thousand parameters and trains in about a
minute on two cores. Linear sizes are multiples of 128 so group quantization (g128) applies to every layer.

The result is cached under ``$QMODEL_CACHE_DIR`` (default ``<repo>/.cache/tinymodel``) in a directory keyed by a
hash of the training config (and the interpreter version, since that changes the text): a change retrains.
Beside the model it writes three disjoint text files cut from different stdlib modules:
``train.txt`` (training), ``calibration.txt`` (quantizer calibration) and ``eval.txt`` (held-out perplexity), so
calibration never sees the evaluation text.

    python -m qmodel_jobs.tinymodel --out DIR        # build (or reuse the cache) and copy to DIR
    python -m qmodel_jobs.tinymodel                  # build (or reuse) and print the cache path
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

CACHE_ENV = "QMODEL_CACHE_DIR"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = REPO_ROOT / ".cache" / "tinymodel"

# A chat template so the quantizer's chat path (calibration through the template) runs on the tiny model too.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@dataclasses.dataclass(frozen=True)
class TinyConfig:
    hidden_size: int = 128
    intermediate_size: int = 512  # multiple of 128: group quantization needs it (688 fails)
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 256  # = seq_len: evaluation windows never reach untrained positions
    seq_len: int = 256
    batch_size: int = 8
    steps: int = 600
    lr: float = 3e-3
    seed: int = 0
    # Every `holdout_every`-th stdlib module (sorted by name) goes to eval, the one after it to calibration.
    holdout_every: int = 12
    max_train_chars: int = 3_000_000

    def key(self) -> str:
        material = dataclasses.asdict(self) | {"python": f"{sys.version_info[0]}.{sys.version_info[1]}",
                                               "format": 1}
        return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:12]


@dataclasses.dataclass(frozen=True)
class TinyModel:
    root: Path

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def train_file(self) -> Path:
        return self.root / "train.txt"

    @property
    def calibration_file(self) -> Path:
        return self.root / "calibration.txt"

    @property
    def eval_file(self) -> Path:
        return self.root / "eval.txt"

    @property
    def meta(self) -> dict:
        return json.loads((self.root / "meta.json").read_text())


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def _stdlib_texts(cfg: TinyConfig) -> tuple[str, str, str]:
    lib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in lib.glob("*.py") if p.is_file())
    if len(files) < 3 * cfg.holdout_every:
        raise RuntimeError(f"too few stdlib sources under {lib} to build the tiny corpus")
    train: list[str] = []
    calib: list[str] = []
    held: list[str] = []
    for i, path in enumerate(files):
        text = path.read_text(encoding="utf-8", errors="replace")
        slot = i % cfg.holdout_every
        (held if slot == 0 else calib if slot == 1 else train).append(text)
    return "\n".join(train)[: cfg.max_train_chars], "\n".join(calib), "\n".join(held)


def _train_tokenizer(text: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|pad|>", "<|bos|>", "<|eos|>"]
    # vocab = 256 bytes + 3 specials: a pure byte-level vocabulary (no merges), so every text tokenizes.
    trainer = trainers.BpeTrainer(vocab_size=259, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([text[:200_000]], trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>", bos_token="<|bos|>",
                                   eos_token="<|eos|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _train(cfg: TinyConfig, out: Path, log=print) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(cfg.seed)
    train_text, calib_text, eval_text = _stdlib_texts(cfg)
    (out / "train.txt").write_text(train_text, encoding="utf-8")
    (out / "calibration.txt").write_text(calib_text, encoding="utf-8")
    (out / "eval.txt").write_text(eval_text, encoding="utf-8")

    tokenizer = _train_tokenizer(train_text)
    ids = torch.tensor(tokenizer(train_text, add_special_tokens=False)["input_ids"], dtype=torch.long)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads, max_position_embeddings=cfg.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(cfg.seed)
    started = time.monotonic()
    loss_value = float("nan")
    for step in range(cfg.steps):
        starts = torch.randint(0, ids.numel() - cfg.seq_len - 1, (cfg.batch_size,), generator=gen)
        batch = torch.stack([ids[s: s + cfg.seq_len] for s in starts.tolist()])
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        loss_value = float(loss.detach())
        if step % 100 == 0 or step == cfg.steps - 1:
            log(f"tinymodel: step {step + 1}/{cfg.steps} loss {loss_value:.3f}")
    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")
    params = sum(p.numel() for p in model.parameters())
    return {"key": cfg.key(), "config": dataclasses.asdict(cfg), "parameters": params,
            "final_train_loss": round(loss_value, 4), "train_seconds": round(time.monotonic() - started, 1),
            "train_tokens": int(ids.numel())}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_tiny_model(cfg: TinyConfig | None = None, root: Path | None = None, log=print) -> TinyModel:
    """Return the cached tiny model for ``cfg``, training it first when the cache lacks it (process-safe)."""
    cfg = cfg or TinyConfig()
    base = root or cache_dir()
    final = base / cfg.key()
    if (final / "meta.json").exists():
        return TinyModel(final)
    with _locked(base / f"{cfg.key()}.lock"):
        if (final / "meta.json").exists():
            return TinyModel(final)
        tmp = base / f"{cfg.key()}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        log(f"tinymodel: training into {final} (config key {cfg.key()})")
        meta = _train(cfg, tmp, log=log)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    return TinyModel(final)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qmodel_jobs.tinymodel", description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="copy the model and its text files to this directory")
    parser.add_argument("--cache-dir", help=f"cache root (default ${CACHE_ENV} or {DEFAULT_CACHE})")
    parser.add_argument("--steps", type=int, help="training steps (changes the cache key)")
    ns = parser.parse_args(argv)
    cfg = TinyConfig() if ns.steps is None else dataclasses.replace(TinyConfig(), steps=ns.steps)
    tiny = ensure_tiny_model(cfg, Path(ns.cache_dir) if ns.cache_dir else None,
                             log=lambda m: print(m, file=sys.stderr, flush=True))
    if ns.out:
        shutil.copytree(tiny.root, ns.out, dirs_exist_ok=True)
        print(Path(ns.out).resolve())
    else:
        print(tiny.root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
