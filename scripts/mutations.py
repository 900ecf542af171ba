"""Plant small, realistic bugs in visionkit one at a time and check that the tests catch each.

Every mutation replaces one exact piece of source (which must occur exactly once) in a
copy of the repository, runs the tests that cover that code, and counts the mutation as
caught when they fail. The working tree is never changed.

Usage:
    python scripts/mutations.py              # every mutation (about 5 minutes on 2 cores)
    python scripts/mutations.py --list       # names only
    python scripts/mutations.py topk nan     # those whose name contains a word given

Exit status: 0 when every mutation was caught, 1 otherwise (or when a mutation no longer
applies because the code it targets changed: update it here).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("VISIONKIT_SHARED_DATA", REPO.parent / "shared" / "data"))


@dataclass(frozen=True)
class Mutation:
    """One planted bug: replace ``old`` by ``new`` in ``path``; ``tests`` must then fail."""

    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


T = "tests/unit/training/"
C = "tests/unit/callbacks/"

MUTATIONS = [
    # ---------------------------------------------------------------- the training loop
    Mutation(
        "accumulation not averaged",
        "src/visionkit/training/_loop.py",
        "loss / t.accumulate_grad_batches if t.accumulate_grad_batches > 1 else loss",
        "loss",
        (T + "test_edges.py",),
    ),
    Mutation(
        "uneven last accumulation group never steps",
        "src/visionkit/training/_loop.py",
        "stepping = last or self._stepped(batch_index)",
        "stepping = self._stepped(batch_index)",
        (T + "test_edges.py",),
    ),
    Mutation(
        "max_steps off by one",
        "src/visionkit/training/_stopping.py",
        "return max_steps is not None and self.trainer.global_step >= max_steps",
        "return max_steps is not None and self.trainer.global_step > max_steps",
        (T + "test_trainer_loop.py", T + "test_edges.py"),
    ),
    Mutation(
        "history row duplicated after a cut and resume",
        "src/visionkit/training/_loop.py",
        'if rows and rows[-1].get("epoch") == t.last_metrics["epoch"]:',
        "if False:",
        (T + "test_edges.py",),
    ),
    Mutation(
        "empty validation data found only after an epoch",
        "src/visionkit/training/_batches.py",
        'check_not_empty(val_loader, "validation")',
        "pass",
        (T + "test_edges.py",),
    ),
    Mutation(
        "label range check off by one",
        "src/visionkit/training/_batches.py",
        "if low < 0 or high >= classes:",
        "if low < 0 or high > classes:",
        (T + "test_trainer_loop.py", T + "test_edges.py"),
    ),
    Mutation(
        "gradient clipping skipped",
        "src/visionkit/training/_loop.py",
        "torch.nn.utils.clip_grad_norm_(t.model.parameters(), t.gradient_clip_val)",
        "pass",
        (T, C + "test_before_optimizer_step.py"),
    ),
    # ---------------------------------------------------------------- exact resume
    Mutation(
        "Python's random not restored on resume",
        "src/visionkit/_seed.py",
        "    random.setstate((version, tuple(internal), gauss))\n",
        "",
        (T + "test_edges.py",),
    ),
    Mutation(
        "NumPy's generator not restored on resume",
        "src/visionkit/_seed.py",
        "    np.random.set_state((kind, keys.numpy(), pos, has_gauss, cached))\n",
        "",
        (T + "test_edges.py",),
    ),
    Mutation(
        "position in the epoch not restored",
        "src/visionkit/training/_state.py",
        '    trainer.batch_in_epoch = int(state["batch_in_epoch"])\n',
        "",
        (T + "test_resume.py",),
    ),
    # ---------------------------------------------------------------- fine-tuning and lr_find
    Mutation(
        "fine-tuning does not freeze again on resume",
        "src/visionkit/callbacks/finetune.py",
        "self._set_frozen(trainer, trainer.epoch < self.freeze_epochs)",
        "self._set_frozen(trainer, trainer.global_step == 0)",
        (T + "test_finetune.py",),
    ),
    Mutation(
        "discriminative rates not applied",
        "src/visionkit/callbacks/finetune.py",
        'group["lr"] = peak * float(group.get(_SCALE, 1.0)) * factor',
        'group["lr"] = peak * factor',
        (T + "test_finetune.py",),
    ),
    Mutation(
        "lr_find leaves the random generators moved",
        "src/visionkit/training/lr_finder.py",
        '    set_rng_state(saved["rng"])\n',
        "",
        (T + "test_lr_finder.py",),
    ),
    Mutation(
        "lr_find leaves the optimizer's state changed",
        "src/visionkit/training/lr_finder.py",
        '    trainer.optimizer.load_state_dict(saved["optimizer"])\n',
        "",
        (T + "test_lr_finder.py",),
    ),
    # ---------------------------------------------------------------- callbacks
    Mutation(
        "early stopping patience off by one",
        "src/visionkit/callbacks/early_stopping.py",
        "if self.wait >= self.patience:",
        "if self.wait > self.patience:",
        (C,),
    ),
    Mutation(
        "min mode inverted",
        "src/visionkit/callbacks/base.py",
        "return value < self.best - self.min_delta",
        "return value > self.best - self.min_delta",
        (C,),
    ),
    Mutation(
        "early stopping ignores a non-finite value",
        "src/visionkit/callbacks/early_stopping.py",
        "if self.check_finite and not math.isfinite(value):",
        "if False:",
        (C,),
    ),
    # ---------------------------------------------------------------- checkpoints
    Mutation(
        "checkpoint written straight to its final path",
        "src/visionkit/predict/checkpoint.py",
        '        with os.fdopen(handle, "wb") as stream:\n',
        "        os.close(handle)\n        temp_name = str(path)\n"
        '        with open(path, "wb") as stream:\n',
        ("tests/unit/predict/test_checkpoint.py",),
    ),
    Mutation(
        "NaN let into the checkpoint top k",
        "src/visionkit/callbacks/checkpoint.py",
        "if self.save_top_k != 0 and math.isfinite(value) and self._qualifies(value):",
        "if self.save_top_k != 0 and self._qualifies(value):",
        (C + "test_checkpoint_ranking.py",),
    ),
    Mutation(
        "checkpoint ties: the later epoch wins",
        "src/visionkit/callbacks/checkpoint.py",
        "return sorted(self.best_k_models, key=lambda path: sign * self.best_k_models[path])",
        "return sorted(reversed(self.best_k_models), key=lambda p: sign * self.best_k_models[p])",
        (C + "test_checkpoint_ranking.py",),
    ),
    # ---------------------------------------------------------------- metrics
    Mutation(
        "top-k ties ranked differently from accuracy",
        "src/visionkit/training/metrics.py",
        "return (above | (tied & before)).sum(1)",
        "return (above | (tied & ~before)).sum(1)",
        (T + "test_top_k_ties.py",),
    ),
    Mutation(
        "top-k order reversed",
        "src/visionkit/training/metrics.py",
        "above = (logits > score) | (nan & ~nan_score)",
        "above = (logits < score) | (nan & ~nan_score)",
        (T + "test_top_k_ties.py",),
    ),
    Mutation(
        "loss reported as 0 without a loss",
        "src/visionkit/training/metrics.py",
        "            state[0] += math.nan\n",
        "            state[0] += 0.0\n",
        (T + "test_metrics_loss.py",),
    ),
    # ---------------------------------------------------------------- MixUp and CutMix
    Mutation(
        "mixup targets not mixed by lam",
        "src/visionkit/callbacks/mixing.py",
        "return _mix_rolled(images, lam), _mix_rolled(targets, lam)",
        "return _mix_rolled(images, lam), targets",
        (C + "test_mixing.py",),
    ),
    Mutation(
        "mixing not rolled",
        "src/visionkit/callbacks/mixing.py",
        "return values.mul(lam).add_(values.roll(1, 0).mul_(1.0 - lam))",
        "return values.mul(lam).add_(values.mul(1.0 - lam))",
        (C + "test_mixing.py",),
    ),
    Mutation(
        "cutmix targets mixed by the drawn lam, not the box's share",
        "src/visionkit/callbacks/mixing.py",
        "return mixed, _mix_rolled(targets, share)",
        "return mixed, _mix_rolled(targets, lam)",
        (C + "test_mixing.py",),
    ),
    Mutation(
        "mixing hook never called by the loop",
        "src/visionkit/training/_loop.py",
        "if transform:  # a callback overrides on_train_batch_transform",
        "if False:",
        (T + "test_mixing_training.py", "tests/integration/test_mixing.py"),
    ),
    # ---------------------------------------------------------------- models
    Mutation(
        "frozen BatchNorm follows train()",
        "src/visionkit/models/transfer.py",
        "return super().train(False)",
        "return super().train(mode)",
        ("tests/unit/models/test_freezing.py",),
    ),
    # ---------------------------------------------------------------- prediction and images
    Mutation(
        "class names that do not fit the model accepted",
        "src/visionkit/predict/predictor.py",
        "if self.classes is None or outputs is None or len(self.classes) == outputs:",
        "if True:",
        ("tests/unit/predict/test_class_count.py",),
    ),
    Mutation(
        "16-bit images clipped to 255",
        "src/visionkit/_images/decode.py",
        "return Image.fromarray(((values + 128) // 257).astype(np.uint8))",
        "return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8))",
        ("tests/unit/data/test_bit_depth_and_links.py", "tests/unit/predict/"),
    ),
    Mutation(
        "link loops walked until the path is too long",
        "src/visionkit/_images/files.py",
        "            if real in chain:\n",
        "            if False:\n",
        ("tests/unit/data/test_bit_depth_and_links.py",),
    ),
    Mutation(
        "bicubic weights resized bilinear",
        "src/visionkit/_images/decode.py",
        "    mode = INTERPOLATIONS[spec.interpolation]\n",
        '    mode = INTERPOLATIONS["bilinear"]\n',
        ("tests/unit/data/test_model_presets.py",),
    ),
    # ---------------------------------------------------------------- preemption and runs
    Mutation(
        "run folders claimed without an atomic mkdir",
        "src/visionkit/training/_runs.py",
        "            candidate.mkdir()\n",
        "            candidate.mkdir(exist_ok=True)\n",
        (T + "test_runs.py",),
    ),
    Mutation(
        "resume_from='auto' picks the newest file",
        "src/visionkit/training/_runs.py",
        'ranked = (*position, path.name == "last.ckpt")',
        "ranked = (int(path.stat().st_mtime), 0, 0, 0)",
        (T + "test_runs.py",),
    ),
    Mutation(
        "a signal stops inside an accumulation group",
        "src/visionkit/training/_loop.py",
        "if t._stop.in_epoch(batch_index, stepped=last or group_done):",
        "if t._stop.in_epoch(batch_index, stepped=True):",
        (
            "tests/reliability/test_preemption.py"
            "::test_signal_inside_an_accumulation_group_waits_for_its_step",
        ),
    ),
    Mutation(
        "no checkpoint written on SIGTERM",
        "src/visionkit/training/_signals.py",
        "            trainer.save_checkpoint(path)\n",
        "",
        ("tests/reliability/test_preemption.py::test_sigint_saves_then_raises_keyboard_interrupt",),
    ),
    # ---------------------------------------------------------------- feature caching
    Mutation(
        "features cached with the backbone in train mode",
        "src/visionkit/training/_features.py",
        "    t.model.eval()\n    handle = head.register_forward_pre_hook",
        "    t.model.train()\n    handle = head.register_forward_pre_hook",
        (T + "test_feature_cache.py",),
    ),
    Mutation(
        "cached training features ignore the epoch's shuffled order",
        "src/visionkit/training/_features.py",
        "order = epoch_permutation(n, seed, self.epoch) if shuffle else torch.arange(n)",
        "order = torch.arange(n)",
        (T + "test_feature_cache.py",),
    ),
    # ---------------------------------------------------------------- data
    Mutation(
        "float32 statistics",
        "src/visionkit/data/stats.py",
        'pixels = image.detach().to("cpu", torch.float64).flatten(1)',
        'pixels = image.detach().to("cpu", torch.float32).flatten(1)',
        ("tests/unit/data/",),
    ),
    # ---------------------------------------------------------------- background checkpoints
    Mutation(
        "background checkpoint is not a copy",
        "src/visionkit/callbacks/checkpoint.py",
        "copy, bookkeeping = snapshot(checkpoint), self._bookkeeping()",
        "copy, bookkeeping = checkpoint, self._bookkeeping()",
        (C + "test_async_checkpoints.py",),
    ),
    Mutation(
        "fit returns before the checkpoint writes finish",
        "src/visionkit/callbacks/checkpoint.py",
        'failed."""\n        self._finish(close=True)\n',
        'failed."""\n',
        (C + "test_async_checkpoints.py",),
    ),
    Mutation(
        "a file leaves the top k before its replacement is written",
        "src/visionkit/callbacks/checkpoint.py",
        "        copy, bookkeeping = snapshot(checkpoint), self._bookkeeping()",
        "        [Path(old).unlink(missing_ok=True) for old in removed]\n"
        "        copy, bookkeeping = snapshot(checkpoint), self._bookkeeping()",
        (C + "test_async_checkpoints.py",),
    ),
    Mutation(
        "last.ckpt not published when the best file is saved with it",
        "src/visionkit/callbacks/checkpoint.py",
        "        for name in paths[1:]:\n",
        "        for name in paths[1:0]:\n",
        (C + "test_async_checkpoints.py",),
    ),
    Mutation(
        "last.ckpt copied empty where there are no hard links",
        "src/visionkit/predict/checkpoint.py",
        "functools.partial(shutil.copyfileobj, original)",
        "lambda stream: None",
        (C + "test_async_checkpoints.py",),
    ),
    # ---------------------------------------------------------------- compile fallback
    Mutation(
        "compiled backward fallback keeps the failed step's batch-norm statistics",
        "src/visionkit/training/_compile.py",
        "                    buffer.copy_(saved)\n",
        "                    pass\n",
        (T + "test_compile.py",),
    ),
    Mutation(
        "compiled backward fallback restores gradients it added to, not copies",
        "src/visionkit/training/_compile.py",
        "None if p.grad is None else p.grad.clone()",
        "p.grad",
        (T + "test_compile.py",),
    ),
    Mutation(
        "a data error in the trial step is taken for a compile failure",
        "src/visionkit/training/_compile.py",
        "        except VisionKitError:\n            raise\n",
        "",
        (T + "test_compile.py",),
    ),
    Mutation(
        "only the first batch shape is tried, not a smaller last batch",
        "src/visionkit/training/_compile.py",
        "tuple(x.shape) not in self._proven",
        "not self._proven",
        (T + "test_compile.py",),
    ),
    # ---------------------------------------------------------------- the benchmarks
    Mutation(
        "a side-by-side contender's figures other than its CPU time are dropped",
        "bench/_side_by_side.py",
        'figures = dict(result) if isinstance(result, dict) else {"cpu": result[1]}',
        'figures = {"cpu": result["cpu"] if isinstance(result, dict) else result[1]}',
        ("tests/unit/test_bench_side_by_side.py",),
    ),
    Mutation(
        "a failed Lightning variant counts as Lightning's best",
        "bench/_targets.py",
        'k.startswith("Lightning") and v == v]',
        'k.startswith("Lightning")]',
        ("tests/unit/test_bench_targets.py",),
    ),
    Mutation(
        "side-by-side contenders not pinned to one core",
        "bench/_side_by_side.py",
        "            os.sched_setaffinity(0, pinned)",
        "            pass",
        ("tests/unit/test_bench_side_by_side.py",),
    ),
    Mutation(
        "side-by-side contender timed without its warm-up",
        "bench/_side_by_side.py",
        "        contender.run(*warmup)\n",
        "",
        ("tests/unit/test_bench_side_by_side.py",),
    ),
    Mutation(
        "the hand loop's noise figure compares it with the Trainer",
        "bench/_targets.py",
        'ratios = round_ratios(together, AGAIN, base, "cpu")',
        'ratios = round_ratios(together, "visionkit Trainer", base, "cpu")',
        ("tests/unit/test_bench_targets.py",),
    ),
]


def _copy_repo(into: Path) -> Path:
    ignore = shutil.ignore_patterns(".git", "site", "dist", "build", "*.egg-info", "__pycache__")
    target = into / "repo"
    shutil.copytree(REPO, target, ignore=ignore, symlinks=True)
    return target


def _pytest(repo: Path, tests: tuple[str, ...]) -> int:
    env = {
        **os.environ,
        "PYTHONPATH": str(repo / "src"),
        "VISIONKIT_SHARED_DATA": str(SHARED_DATA),
    }
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
    command += ["-m", "not slow and not gpu", *tests]
    result = subprocess.run(
        command, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return result.returncode


def _run(mutation: Mutation, repo: Path) -> tuple[bool, float]:
    path = repo / mutation.path
    original = path.read_text()
    count = original.count(mutation.old)
    if count != 1:
        raise SystemExit(
            f"mutation {mutation.name!r}: the text to replace occurs {count} times in "
            f"{mutation.path} (expected once): update scripts/mutations.py"
        )
    path.write_text(original.replace(mutation.old, mutation.new))
    start = time.monotonic()
    try:
        returncode = _pytest(repo, mutation.tests)
    finally:
        path.write_text(original)
    return returncode not in (0, 5), time.monotonic() - start


def _check_baseline(chosen: list[Mutation], repo: Path) -> None:
    """The tests must pass on the unchanged code, or a failure would prove nothing."""
    tests = tuple(sorted({t for m in chosen for t in m.tests}))
    if _pytest(repo, tests) != 0:
        raise SystemExit(
            "the tests fail on the unchanged code, so no mutation could be judged: run "
            f"pytest {' '.join(tests)} and fix them first"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("words", nargs="*", help="run the mutations whose name has a word")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.words or any(w in m.name for w in args.words)]
    if args.list:
        print("\n".join(m.name for m in chosen))
        return 0
    with tempfile.TemporaryDirectory(prefix="visionkit-mutations-") as folder:
        repo = _copy_repo(Path(folder))
        _check_baseline(chosen, repo)
        print("the tests pass on the unchanged code; planting one bug at a time:")
        missed = []
        for mutation in chosen:
            caught, seconds = _run(mutation, repo)
            print(f"{'caught' if caught else 'MISSED':6}  {seconds:5.1f}s  {mutation.name}")
            if not caught:
                missed.append(mutation.name)
    print(f"\n{len(chosen) - len(missed)} of {len(chosen)} mutations caught")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
