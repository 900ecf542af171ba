"""Draw the pictures and the output of docs/guides/interpretation.md from real data.

Run ``python scripts/make_interpretation_images.py``.

Trains a small MLP for a few hundred steps on the MNIST sample bundled with visionkit,
interprets it on the sample's test set and writes ``interpretation-top-losses.png``,
``interpretation-confusion.png`` and ``interpretation-output.txt`` into ``docs/images/``.
The guide includes the code between the ``--8<--`` markers below, so the page shows what
made its pictures. Takes a few seconds on a laptop CPU.
"""

from __future__ import annotations

import os
import pprint
from pathlib import Path

# --8<-- [start:imports]
import torch

from visionkit import Trainer, seed_everything
from visionkit.data import mnist_sample
from visionkit.models import create_model
from visionkit.predict import Interpretation

# --8<-- [end:imports]

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "images"

os.chdir(REPO)  # the paths below are the guide's, relative to the repository
OUT.mkdir(parents=True, exist_ok=True)
# --8<-- [start:interpret]
seed_everything(0)
data = mnist_sample(normalize=(0.1307, 0.3081))
model = create_model("mlp", in_features=784, hidden=[64], num_classes=10)
trainer = Trainer(
    model,
    optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
    max_steps=200,
    device="cpu",
    enable_checkpointing=False,
    enable_progress_bar=False,
)
trainer.fit(data.train, data.val, batch_size=32)

interp = Interpretation.from_trainer(trainer, data.test)  # one pass over 1,000 digits
interp.plot_top_losses(9, path="docs/images/interpretation-top-losses.png")
interp.plot_confusion_matrix(path="docs/images/interpretation-confusion.png")
print(interp)
print(interp.most_confused(min_count=5))
# --8<-- [end:interpret]
output = [
    ">>> print(interp)",
    str(interp),
    ">>> interp.most_confused(min_count=5)",
    pprint.pformat(interp.most_confused(min_count=5), width=60),
]
(OUT / "interpretation-output.txt").write_text("\n".join(output) + "\n", encoding="utf-8")
for name in ("interpretation-top-losses.png", "interpretation-confusion.png"):
    print(f"docs/images/{name}: {(OUT / name).stat().st_size // 1024} KiB")
