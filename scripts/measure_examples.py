"""How short the W1 example is against seed 001's hand-written code, in lines of code.

Run ``python scripts/measure_examples.py``; ``tests/unit/test_docs.py`` checks the ratios.

Lines of code are the non-blank lines that are not comments (the seeds' code cells and the
example's ``main`` body alike; docstrings and the ``parse_example_args`` call, i.e. argument
parsing, are left out). Two comparisons:

* **workflow**: the whole ``main`` body of ``examples/w1_mnist_mlp.py`` against every code
  cell of seed 001 that does a step the example does: the data loaders with the validation
  split, the network, loss and optimizer, the training loop that saves the best model, the
  reload, the per-class test loop, and the grid of test predictions. The cells that only
  look at raw training images, the import cell and the printed outputs are not counted.
* **training and evaluation**: the example's statements that use the trainer or its test
  report (not the prediction plot, not the ``return``) against the seed's loss/optimizer
  cell, training loop, reload and test loop.

The issue asks for at most a quarter in both.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEED_001 = next((REPO.parent / "shared" / "seeds").glob("001_*.txt"), None)
W1 = REPO / "examples" / "w1_mnist_mlp.py"

# Code cells of seed 001 by the first line of their code, and what they do.
WORKFLOW_CELLS = {
    "from torchvision import datasets": "data loaders and the 20% validation split",
    "import torch.nn as nn": "the 784-512-512-10 network",
    "criterion = nn.CrossEntropyLoss()": "loss and optimizer",
    "n_epochs = 50": "training loop, saving on lower validation loss",
    "model.load_state_dict(torch.load('model.pt'))": "reload the best model",
    "test_loss = 0.0": "per-class test accuracy",
    "dataiter = iter(test_loader)": "grid of test predictions, green/red",
}
TRAIN_EVAL_CELLS = (
    "criterion = nn.CrossEntropyLoss()",
    "n_epochs = 50",
    "model.load_state_dict(torch.load('model.pt'))",
    "test_loss = 0.0",
)


def code_lines(text: str) -> list[str]:
    """The non-blank lines of ``text`` that are not ``#`` comments."""
    return [line for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def seed_cells(path: Path) -> dict[str, int]:
    """Lines of code of each of seed 001's workflow cells, keyed by the cell's first line."""
    cells = re.findall(r"^```\n(.*?)^```", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    counts: dict[str, int] = {}
    for cell in cells:
        lines = code_lines(cell)
        if lines and lines[0].strip() in WORKFLOW_CELLS:
            counts[lines[0].strip()] = len(lines)
    missing = set(WORKFLOW_CELLS) - set(counts)
    if missing:
        raise SystemExit(f"cells not found in {path}: {sorted(missing)}")
    return counts


def example_body(path: Path) -> list[str]:
    """Lines of code of ``main`` in an example, without the docstring and argument parsing."""
    source = path.read_text(encoding="utf-8")
    main = next(
        node
        for node in ast.parse(source).body
        if isinstance(node, ast.FunctionDef) and node.name == "main"
    )
    lines = source.splitlines()
    body: list[str] = []
    for statement in main.body:
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
            continue  # a docstring
        text = "\n".join(lines[statement.lineno - 1 : statement.end_lineno])
        if "parse_example_args(" not in text:
            body.extend(code_lines(text))
    return body


def train_eval_lines(body: list[str]) -> list[str]:
    """The example's training and evaluation code: the statements that use the trainer."""
    statements = [s for s in _statements(body) if not re.match(r"\s*(return|predictor)\b", s)]
    return [s for s in statements if re.search(r"\btrainer\b|\breport\b", s)]


def _statements(body: list[str]) -> list[str]:
    """Join continuation lines so that each item is one statement's lines (joined by \\n)."""
    statements: list[str] = []
    depth = 0
    for line in body:
        if depth == 0:
            statements.append(line)
        else:
            statements[-1] += "\n" + line
        depth += line.count("(") + line.count("[") - line.count(")") - line.count("]")
    return statements


def measure() -> dict[str, tuple[int, int]]:
    """``{comparison: (example lines, seed lines)}`` for both comparisons."""
    if SEED_001 is None:
        raise SystemExit("seed 001 not found in ../shared/seeds")
    cells = seed_cells(SEED_001)
    body = example_body(W1)
    train_eval = sum(len(s.splitlines()) for s in train_eval_lines(body))
    return {
        "workflow": (len(body), sum(cells.values())),
        "training and evaluation": (train_eval, sum(cells[c] for c in TRAIN_EVAL_CELLS)),
    }


def main() -> int:
    assert SEED_001 is not None
    for first, count in seed_cells(SEED_001).items():
        print(f"seed 001 cell {WORKFLOW_CELLS[first]!r}: {count} lines")
    for name, (example, seed) in measure().items():
        print(f"{name}: W1 example {example} lines / seed 001 {seed} lines = {example / seed:.2f}")
    for path in sorted((REPO / "examples").glob("w*.py")):
        print(f"{path.name}: main body {len(example_body(path))} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
