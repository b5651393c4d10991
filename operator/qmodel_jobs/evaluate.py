"""The evaluator job: baseline vs candidate on the same held-out data, and the gate decision.

    python -m qmodel_jobs.evaluate --config-json '<EvaluateArgs as JSON>'
    python -m qmodel_jobs.evaluate --config args.json

Measures, for the baseline (source) model and the candidate (artifact), one model in memory at a time:
- sliding-window token perplexity on the same held-out text (hub dataset or local .txt/.jsonl; first ``maxTokens``
  tokens, windows of the model's context (≤ 4096) advanced by ``stride``; each token scored once);
- optional lm-eval tasks (``lm_eval.simple_evaluate`` on an in-process HFLM; custom task YAMLs from
  ``tasksIncludePath``), metric drop in percent;
- the business prompt set (list of {prompt, expected, match: exact|contains|regex}), pass rate vs the baseline's;
- a short greedy-generation sanity check (no empty output, no repeated-n-gram degeneration beyond the baseline's).
Gate: perplexity increase ≤ maxIncrease AND ≤ maxIncreasePercent, every task drop ≤ maxDropPercent, prompt pass
rate ≥ minPassPercent of the baseline's, generation sane. The result (EvaluateResult) goes to report.json and the
termination message. The gate verdict is a result, not an error: a failed gate exits 0 with ``passed: false``
(the Job succeeds, no alert fires on a normal fallback); non-zero exit codes are kept for real errors.
"""

from __future__ import annotations

import gc
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from qmodel_operator.api.jobcontract import (
    EVAL_REPORT_FILE,
    REPORT_FILE,
    EvaluateArgs,
    EvaluateResult,
    ExitCode,
)
from qmodel_operator.api.spec import Method, Task
from qmodel_operator.api.status import TaskResult

from .common import (
    JobError,
    bad_input,
    download_source,
    language_warning,
    library_versions,
    load_records,
    log,
    output_path,
    peak_gpu_bytes,
    peak_rss_bytes,
    progress,
    record_text,
    resolve_path,
    resolve_source,
    run_job,
    set_seed,
    write_json,
)
from .objectstore import download, is_s3, scratch_dir, upload

PROG = "python -m qmodel_jobs.evaluate"
MAX_WINDOW = 4096
GEN_NEW_TOKENS = 32
GEN_PROMPTS = 4
PROMPT_NEW_TOKENS = 64
NGRAM = 3
# Candidate generations are degenerate when their repeated-n-gram ratio exceeds both this and the baseline's + slack.
DEGENERATE_RATIO = 0.5
DEGENERATE_SLACK = 0.2
METRIC_PREFERENCE = ("acc_norm", "acc", "exact_match", "f1", "mcc", "bleu", "word_perplexity")


# ---------------------------------------------------------------------------------------------- models


@dataclass
class Side:
    name: str  # "baseline" | "candidate"
    path: str
    quantization_config: Any = None
    gguf: bool = False  # a GGUF file, loaded and run by llama.cpp (what the CPU server runs)


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(side: Side) -> Any:
    if side.gguf:
        from .gguf import GgufModel

        return GgufModel(side.path)
    from transformers import AutoModelForCausalLM

    kw: dict[str, Any] = {"dtype": "auto"}
    if side.quantization_config is not None:
        kw["quantization_config"] = side.quantization_config
    if device() == "cuda":
        kw["device_map"] = "auto"
    model = AutoModelForCausalLM.from_pretrained(side.path, **kw)
    model.eval()
    return model


def _nf4_config() -> Any:
    import torch

    if not torch.cuda.is_available():
        raise JobError(ExitCode.UNSUPPORTED, "nf4 candidates are evaluated with bitsandbytes, which needs a GPU")
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError as exc:
        raise JobError(ExitCode.UNSUPPORTED, "nf4 evaluation needs bitsandbytes in the evaluator image") from exc
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def model_inputs(model: Any, ids: list[int]) -> Any:
    import torch

    return torch.tensor([ids], dtype=torch.long, device=next(model.parameters()).device)


def is_gguf(model: Any) -> bool:
    from .gguf import GgufModel

    return isinstance(model, GgufModel)


def context_length(model: Any) -> int:
    if is_gguf(model):
        return int(model.context)
    return int(getattr(model.config, "max_position_embeddings", 2048) or 2048)


def window_logits(model: Any, ids: list[int]) -> Any:
    """float32 logits of ``ids`` [len(ids) - 1, vocab]: row i predicts ids[i + 1]."""
    import torch

    if is_gguf(model):
        return torch.from_numpy(model.logits(ids)[:-1]).float()
    return model(model_inputs(model, ids)).logits[0, :-1].float()


# ---------------------------------------------------------------------------------------------- perplexity


def eval_token_ids(args: EvaluateArgs, tokenizer: Any) -> tuple[list[int], dict[str, Any], list[str]]:
    ppl = args.evaluation.perplexity
    records = load_records(ppl.dataset, ppl.config, ppl.split, ppl.text_field)
    texts = [record_text(r, ppl.text_field) for r in records]
    texts = [t for t in texts if t.strip()] if len(texts) > 1 else texts
    warnings = []
    if w := language_warning(texts, args.language, f"evaluation data {ppl.dataset}"):
        warnings.append(w)
    # Bound the tokenizer's work: no tokenizer needs more than 16 characters per token.
    budget = ppl.max_tokens * 16
    joined, size = [], 0
    for t in texts:
        joined.append(t)
        size += len(t) + 2
        if size >= budget:
            break
    text = "\n\n".join(joined)[:budget]
    ids = tokenizer(text, add_special_tokens=True)["input_ids"][: ppl.max_tokens]
    if len(ids) < 32:
        raise bad_input(f"evaluation data {ppl.dataset} has only {len(ids)} tokens")
    info = {"dataset": ppl.dataset, "config": ppl.config, "split": ppl.split, "tokens": len(ids),
            "maxTokens": ppl.max_tokens}
    return ids, info, warnings


def sliding_perplexity(model: Any, ids: list[int], stride: int, label: str) -> dict[str, Any]:
    """Token perplexity with a sliding window: every token after the first is scored once, with up to
    ``window - stride`` tokens of context carried over from the previous window."""
    import torch

    window = max(2, min(context_length(model), MAX_WINDOW))
    stride = max(1, min(stride, window))
    nll = 0.0
    counted = 0
    prev_end = 0
    starts = list(range(0, len(ids), stride))
    started = time.monotonic()
    with torch.no_grad():
        for n, begin in enumerate(starts):
            end = min(begin + window, len(ids))
            new = end - prev_end  # tokens not scored yet
            if new <= 0:
                break
            logits = window_logits(model, ids[begin:end])
            targets = torch.tensor(ids[begin + 1:end], dtype=torch.long, device=logits.device)
            losses = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
            take = min(new, losses.numel())
            nll += float(losses[-take:].double().sum())
            counted += take
            prev_end = end
            if n % max(1, len(starts) // 10) == 0:
                progress(f"perplexity-{label}", n + 1, len(starts))
            if end == len(ids):
                break
    value = math.exp(nll / counted)
    return {"perplexity": value, "tokensScored": counted, "window": window, "stride": stride,
            "seconds": round(time.monotonic() - started, 3)}


# ---------------------------------------------------------------------------------------------- generation


def repeated_ngram_ratio(tokens: list[int], n: int = NGRAM) -> float:
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def generate(model: Any, tokenizer: Any, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
    import torch

    if is_gguf(model):
        return list(model.generate(prompt_ids, max_new_tokens))
    x = model_inputs(model, prompt_ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.no_grad():
        out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=pad)
    return out[0, x.shape[1]:].tolist()


def generation_probe(model: Any, tokenizer: Any, prompts: list[list[int]]) -> dict[str, Any]:
    outputs = []
    for p in prompts:
        new = generate(model, tokenizer, p, GEN_NEW_TOKENS)
        text = tokenizer.decode(new, skip_special_tokens=True)
        outputs.append({"tokens": len(new), "empty": not text.strip(),
                        "repeatedNgramRatio": round(repeated_ngram_ratio(new), 4), "text": text[:200]})
    ratio = sum(o["repeatedNgramRatio"] for o in outputs) / max(1, len(outputs))
    return {"outputs": outputs, "empty": sum(o["empty"] for o in outputs), "repeatedNgramRatio": round(ratio, 4)}


def generation_verdict(base: dict[str, Any], cand: dict[str, Any]) -> tuple[bool, list[str]]:
    reasons = []
    if cand["empty"] > base["empty"]:
        reasons.append(f"generation check: {cand['empty']} of {len(cand['outputs'])} candidate generations are "
                       f"empty (baseline {base['empty']})")
    limit = max(DEGENERATE_RATIO, base["repeatedNgramRatio"] + DEGENERATE_SLACK)
    if cand["repeatedNgramRatio"] > limit:
        reasons.append(f"generation check: candidate output repeats itself ({NGRAM}-gram repeat ratio "
                       f"{cand['repeatedNgramRatio']:.2f} > {limit:.2f}; baseline {base['repeatedNgramRatio']:.2f})")
    return not reasons, reasons


# ---------------------------------------------------------------------------------------------- business prompts


@dataclass
class PromptCase:
    prompt: str
    expected: str
    match: str = "contains"
    max_new_tokens: int = PROMPT_NEW_TOKENS


def load_prompt_cases(path_str: str) -> list[PromptCase]:
    path = resolve_path(path_str) or Path(path_str)
    if path.is_dir():  # a whole ConfigMap mounted as a directory: every key file
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    elif path.is_file():
        files = [path]
    else:
        raise bad_input(f"prompt set {path_str} does not exist")
    cases: list[PromptCase] = []
    import yaml

    for f in files:
        try:
            data = yaml.safe_load(f.read_text(encoding="utf-8"))  # YAML is a superset of JSON
        except yaml.YAMLError as exc:
            raise bad_input(f"prompt set {f.name}: not JSON/YAML ({str(exc)[:200]})") from exc
        if isinstance(data, dict):
            data = data.get("prompts", data.get("cases"))
        if not isinstance(data, list):
            raise bad_input(f"prompt set {f.name}: expected a list of {{prompt, expected, match}}")
        for i, item in enumerate(data):
            if not isinstance(item, dict) or "prompt" not in item or "expected" not in item:
                raise bad_input(f"prompt set {f.name} item {i}: needs 'prompt' and 'expected'")
            match = str(item.get("match", "contains")).lower()
            if match not in {"exact", "contains", "regex"}:
                raise bad_input(f"prompt set {f.name} item {i}: match must be exact, contains or regex")
            if match == "regex":
                try:
                    re.compile(str(item["expected"]))
                except re.error as exc:
                    raise bad_input(f"prompt set {f.name} item {i}: bad regex ({exc})") from exc
            cases.append(PromptCase(str(item["prompt"]), str(item["expected"]), match,
                                    int(cast(Any, item.get("maxNewTokens", item.get("max_new_tokens", PROMPT_NEW_TOKENS))))))
    if not cases:
        raise bad_input(f"prompt set {path_str} is empty")
    return cases


def prompt_ids(tokenizer: Any, prompt: str, chat: bool) -> list[int]:
    if chat and getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer(prompt, add_special_tokens=True)["input_ids"]


def matches(case: PromptCase, output: str) -> bool:
    if case.match == "exact":
        return output.strip() == case.expected.strip()
    if case.match == "regex":
        return re.search(case.expected, output) is not None
    return case.expected in output


def run_prompts(model: Any, tokenizer: Any, cases: list[PromptCase], chat: bool, label: str) -> dict[str, Any]:
    passed = 0
    details = []
    for i, case in enumerate(cases):
        new = generate(model, tokenizer, prompt_ids(tokenizer, case.prompt, chat), case.max_new_tokens)
        text = tokenizer.decode(new, skip_special_tokens=True)
        ok = matches(case, text)
        passed += ok
        details.append({"index": i, "passed": ok, "output": text[:200]})
        progress(f"prompts-{label}", i + 1, len(cases))
    return {"passPercent": 100.0 * passed / len(cases), "passed": passed, "total": len(cases), "cases": details}


# ---------------------------------------------------------------------------------------------- lm-eval tasks


def run_tasks(model: Any, tokenizer: Any, tasks: list[Task], include_path: str | None, seed: int,
              label: str) -> dict[str, dict[str, Any]]:
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=8, device=device(), add_bos_token=True)
    manager = TaskManager(include_path=include_path) if include_path else TaskManager()
    out: dict[str, dict[str, Any]] = {}
    for i, task in enumerate(tasks):
        progress(f"tasks-{label}", i + 1, len(tasks), task.name)
        if task.name not in manager.all_tasks:
            raise bad_input(f"lm-eval task '{task.name}' is unknown (include path: {include_path or 'none'})")
        res = simple_evaluate(model=lm, tasks=[task.name], num_fewshot=task.num_fewshot, limit=task.limit,
                              task_manager=manager, log_samples=False, bootstrap_iters=0, random_seed=seed,
                              numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed)
        if res is None:
            raise RuntimeError(f"lm-eval returned no result for {task.name}")
        metrics = res["results"].get(task.name) or next(iter(res["results"].values()))
        hib = (res.get("higher_is_better") or {}).get(task.name, {})
        name, value = pick_metric(metrics)
        out[task.name] = {"metric": name, "value": value,
                          "higherIsBetter": bool(hib.get(name.split(",")[0], True)),
                          "all": {k: v for k, v in metrics.items() if isinstance(v, int | float)}}
    return out


def pick_metric(metrics: dict[str, Any]) -> tuple[str, float]:
    numeric = {k: float(v) for k, v in metrics.items()
               if isinstance(v, int | float) and "stderr" not in k and k != "samples"}
    for pref in METRIC_PREFERENCE:
        for k, v in numeric.items():
            if k.split(",")[0] == pref:
                return k, v
    if not numeric:
        raise RuntimeError(f"lm-eval reported no numeric metric ({', '.join(metrics)})")
    k = sorted(numeric)[0]
    return k, numeric[k]


# ---------------------------------------------------------------------------------------------- the job


def evaluate(args: EvaluateArgs) -> tuple[EvaluateResult, ExitCode]:
    started = time.monotonic()
    ev = args.evaluation
    ppl_spec = ev.perplexity
    progress("start", message=f"{args.method}: {args.candidate} vs {args.baseline}")
    if args.method is Method.AUTO:
        raise bad_input("method 'auto' must be resolved before evaluation")
    if args.method is Method.GGUF and ev.tasks:
        raise JobError(ExitCode.UNSUPPORTED, "evaluation.tasks: lm-eval tasks are not run on gguf candidates by "
                                             "this image (perplexity, prompts and the generation check are)")
    nf4 = _nf4_config() if args.method is Method.NF4 else None  # fails fast without a GPU
    cases = load_prompt_cases(args.prompts_file) if args.prompts_file else []
    if ev.prompts is not None and not cases:
        raise bad_input("evaluation.prompts is set but no promptsFile was mounted")
    out_dir = output_path(args.output_dir)
    set_seed(args.seed)

    from transformers import AutoTokenizer

    progress("load", message="resolving the baseline and the candidate")
    src = resolve_source(args.baseline, args.revision)
    base_dir, commit = download_source(src)
    if args.method in (Method.NF4, Method.NONE):
        cand = Side("candidate", base_dir, nf4)
    elif args.method is Method.GGUF:
        gguf_path = resolve_path(args.candidate)
        if gguf_path is None or not gguf_path.is_file() or gguf_path.suffix != ".gguf":
            raise bad_input(f"candidate {args.candidate}: not a .gguf file (is the artifact complete?)")
        cand = Side("candidate", str(gguf_path), gguf=True)
    else:
        cand_path = (download(args.candidate, scratch_dir(args.candidate, "candidates")) if is_s3(args.candidate)
                     else resolve_path(args.candidate))
        if cand_path is None or not (cand_path / "config.json").is_file():
            raise bad_input(f"candidate {args.candidate}: no config.json (is the artifact complete?)")
        cand = Side("candidate", str(cand_path))
    base = Side("baseline", base_dir)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)

    progress("data", message=f"{ppl_spec.dataset} split {ppl_spec.split}")
    ids, data_info, warnings = eval_token_ids(args, tokenizer)
    # Generation probes: token slices at evenly spaced places of the held-out text (deterministic).
    span = 24
    gen_prompts = [ids[k * (len(ids) - span) // GEN_PROMPTS: k * (len(ids) - span) // GEN_PROMPTS + span]
                   for k in range(GEN_PROMPTS)]

    measured: dict[str, dict[str, Any]] = {}
    # none: the candidate is the baseline's own weights, so its measurements are the baseline's (not a second run).
    for side in (base,) if args.method is Method.NONE else (base, cand):
        t = time.monotonic()
        progress(f"load-{side.name}", message=side.path if side.name == "candidate" else args.baseline)
        model = load_model(side)
        m: dict[str, Any] = {"loadSeconds": round(time.monotonic() - t, 3)}
        m["perplexity"] = sliding_perplexity(model, ids, ppl_spec.stride, side.name)
        if ev.generation_check:
            progress(f"generation-{side.name}")
            m["generation"] = generation_probe(model, tokenizer, gen_prompts)
        if cases:
            m["prompts"] = run_prompts(model, tokenizer, cases, args.chat, side.name)
        if ev.tasks:
            m["tasks"] = run_tasks(model, tokenizer, ev.tasks, args.tasks_include_path, args.seed, side.name)
        m["seconds"] = round(time.monotonic() - t, 3)
        measured[side.name] = m
        del model
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
    measured.setdefault("candidate", measured["baseline"])

    result = gate(args, measured)
    result.warnings = warnings
    result.wall_seconds = round(time.monotonic() - started, 3)
    for w in warnings:
        log(f"warning: {w}")
    report = {
        "kind": "qmodel-evaluate-report", "version": 1, "method": str(args.method), "baseline": args.baseline,
        "revision": args.revision, "resolvedRevision": commit, "candidate": args.candidate,
        "thresholds": ev.model_dump(mode="json", by_alias=True), "data": data_info, "measured": measured,
        "libraries": library_versions(), "peakRssBytes": peak_rss_bytes(), "peakGpuBytes": peak_gpu_bytes(),
        "warnings": warnings, "result": result.model_dump(mode="json", by_alias=True, exclude_none=True),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    same = os.path.realpath(out_dir) == os.path.realpath(cand.path)
    write_json(out_dir / (EVAL_REPORT_FILE if same else REPORT_FILE), report)
    if is_s3(args.output_dir):
        upload(out_dir, args.output_dir)
    progress("done", message=result.message)
    return result, ExitCode.OK  # a failed gate is a verdict (passed: false), not a failure of the Job


def gate(args: EvaluateArgs, measured: dict[str, dict[str, Any]]) -> EvaluateResult:
    ev = args.evaluation
    p = ev.perplexity
    b, c = measured["baseline"], measured["candidate"]
    reasons: list[str] = []
    base_ppl = b["perplexity"]["perplexity"]
    cand_ppl = c["perplexity"]["perplexity"]
    inc = cand_ppl - base_ppl
    pct = 100.0 * inc / base_ppl
    if inc > p.max_increase:
        reasons.append(f"perplexity rose {base_ppl:.4f} → {cand_ppl:.4f} (+{inc:.4f}), above maxIncrease "
                       f"{p.max_increase}")
    if pct > p.max_increase_percent:
        reasons.append(f"perplexity rose {pct:.3f} %, above maxIncreasePercent {p.max_increase_percent} %")

    task_results = []
    for task in ev.tasks:
        tb, tc = b["tasks"][task.name], c["tasks"][task.name]
        denom = abs(tb["value"]) or 1e-12
        drop = 100.0 * ((tb["value"] - tc["value"]) if tb["higherIsBetter"] else (tc["value"] - tb["value"])) / denom
        ok = drop <= task.max_drop_percent
        task_results.append(TaskResult(name=task.name, metric=tb["metric"].split(",")[0], baseline=tb["value"],
                                       candidate=tc["value"], drop_percent=round(drop, 4), passed=ok))
        if not ok:
            reasons.append(f"task {task.name}: {tb['metric'].split(',')[0]} {tb['value']:.4f} → {tc['value']:.4f} "
                           f"(drop {drop:.2f} %, max {task.max_drop_percent} %)")

    base_pass = cand_pass = None
    if "prompts" in c:
        base_pass, cand_pass = b["prompts"]["passPercent"], c["prompts"]["passPercent"]
        relative = 100.0 if base_pass == 0 else 100.0 * cand_pass / base_pass
        minimum = ev.prompts.min_pass_percent if ev.prompts is not None else 100.0
        if relative < minimum:
            reasons.append(f"prompt set: candidate passes {cand_pass:.1f} % vs baseline {base_pass:.1f} % "
                           f"({relative:.1f} % of the baseline's, min {minimum} %)")

    gen_ok = None
    if "generation" in c:
        gen_ok, gen_reasons = generation_verdict(b["generation"], c["generation"])
        reasons.extend(gen_reasons)

    passed = not reasons
    summary = (f"perplexity {base_ppl:.4f} → {cand_ppl:.4f} ({pct:+.3f} %)"
               + (f", prompts {cand_pass:.0f} % (baseline {base_pass:.0f} %)" if cand_pass is not None else "")
               + "".join(f", {t.name} {t.metric} {t.baseline:.3f} → {t.candidate:.3f}" for t in task_results))
    return EvaluateResult(
        passed=passed, method=args.method, baseline_perplexity=round(base_ppl, 6), perplexity=round(cand_ppl, 6),
        perplexity_increase=round(inc, 6), perplexity_increase_percent=round(pct, 4), tasks=task_results,
        baseline_prompts_pass_percent=base_pass, prompts_pass_percent=cand_pass, generation_ok=gen_ok,
        reasons=reasons, message=("gate passed: " if passed else "gate failed: ") + summary)


def failed_result(args: EvaluateArgs | None, code: ExitCode, message: str) -> EvaluateResult:
    return EvaluateResult(passed=False, method=args.method if args else Method.NONE, message=message,
                          reasons=[f"{code.name}: {message[:300]}"])


def main(argv: list[str] | None = None) -> int:
    return run_job(EvaluateArgs, argv, PROG, evaluate, failed_result)


if __name__ == "__main__":
    sys.exit(main())
