"""Interpretation: per-sample losses, top-loss titles, confusion cells and the most confused
pairs, each checked against a hand computation from the model's own outputs."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import Subset

from visionkit import Predictor, Trainer, seed_everything
from visionkit.data import TensorImageDataset, image_folder, mnist_sample, presets
from visionkit.exceptions import ConfigurationError, DataError
from visionkit.models import create_model
from visionkit.predict import Interpretation

from .conftest import FLOWER_IDS


def _trained(data: Any, model: nn.Module, steps: int = 15, **options: Any) -> Trainer:
    trainer = Trainer(
        model,
        max_steps=steps,
        device="cpu",
        enable_checkpointing=False,
        enable_progress_bar=False,
        **options,
    )
    trainer.fit(data, batch_size=32)
    return trainer


@pytest.fixture(scope="module")
def digits() -> tuple[Predictor, TensorImageDataset]:
    seed_everything(0)
    data = mnist_sample(normalize=(0.1307, 0.3081))
    model = create_model("mlp", in_features=784, hidden=[16], num_classes=10)
    trainer = _trained(data.train, model)
    predictor = Predictor(model, classes=data.classes, device="cpu")
    assert trainer.classes == data.classes
    return predictor, data.test.select(range(300))


def _by_hand(model: nn.Module, data: Any) -> dict[str, Any]:
    """Probabilities, predictions and -log p[label] computed from the model directly."""
    model.eval()
    with torch.no_grad():
        outputs = model(torch.stack([data[i][0] for i in range(len(data))]))
    probabilities = torch.softmax(outputs.double(), dim=1)
    targets = [int(data[i][1]) for i in range(len(data))]
    predicted = [int(row.argmax()) for row in probabilities]
    losses = [-float(torch.log(probabilities[i, t])) for i, t in enumerate(targets)]
    return {"p": probabilities, "targets": targets, "predicted": predicted, "losses": losses}


def test_losses_and_top_loss_titles_are_those_computed_by_hand(
    digits: tuple[Predictor, TensorImageDataset],
) -> None:
    predictor, data = digits
    interp = Interpretation.from_predictor(predictor, data, batch_size=64)
    hand = _by_hand(predictor.model, data)
    np.testing.assert_allclose(interp.losses.numpy(), hand["losses"], rtol=1e-4, atol=1e-5)
    assert interp.predictions.tolist() == hand["predicted"]
    figure = interp.plot_top_losses(6)
    order = sorted(range(len(data)), key=lambda i: -hand["losses"][i])[:6]
    names = data.classes
    expected = [
        f"{names[hand['predicted'][i]]}/{names[hand['targets'][i]]} / "
        f"{hand['losses'][i]:.2f} / {float(hand['p'][i].max()):.2f}"
        for i in order
    ]
    assert [axes.get_title() for axes in figure.axes] == expected
    assert figure.get_suptitle() == "prediction/actual/loss/probability"
    shown = figure.axes[0].images[0].get_array()
    assert np.array_equal(np.asarray(shown), data.images[order[0], 0].numpy())  # raw uint8 image
    losses, indices = interp.top_losses(6)
    assert indices.tolist() == order
    assert losses.tolist() == sorted(interp.losses.tolist(), reverse=True)[:6]


def _cell_texts(figure: Any) -> dict[tuple[int, int], str]:
    axes = figure.axes[0]
    return {
        (round(text.get_position()[1]), round(text.get_position()[0])): text.get_text()
        for text in axes.texts
    }


def test_confusion_matrix_cells_and_most_confused_are_hand_counts(
    digits: tuple[Predictor, TensorImageDataset],
) -> None:
    predictor, data = digits
    interp = Interpretation.from_predictor(predictor, data)
    hand = _by_hand(predictor.model, data)
    pairs = Counter(zip(hand["targets"], hand["predicted"], strict=True))
    counts = [[pairs[(row, col)] for col in range(10)] for row in range(10)]
    assert interp.confusion_matrix().tolist() == counts
    cells = _cell_texts(interp.plot_confusion_matrix())
    assert cells == {(r, c): str(counts[r][c]) for r in range(10) for c in range(10)}
    shares = _cell_texts(interp.plot_confusion_matrix(normalize=True))
    assert shares == {
        (r, c): f"{counts[r][c] / sum(counts[r]):.2f}" for r in range(10) for c in range(10)
    }
    labels = [t.get_text() for t in interp.plot_confusion_matrix().axes[0].get_yticklabels()]
    assert labels == data.classes
    mistakes = [(a, p, n) for (a, p), n in sorted(pairs.items()) if a != p and n >= 2]
    expected = [(data.classes[a], data.classes[p], n) for a, p, n in mistakes]
    expected.sort(key=lambda cell: -cell[2])
    assert interp.most_confused(min_count=2) == expected
    assert sum(n for *_, n in interp.most_confused()) == sum(
        t != p for t, p in zip(hand["targets"], hand["predicted"], strict=True)
    )


def test_from_trainer_with_log_probabilities_uses_the_normalized_probabilities() -> None:
    seed_everything(0)
    data = mnist_sample(normalize=(0.1307, 0.3081))
    model = nn.Sequential(create_model("mlp", hidden=[16], num_classes=10), nn.LogSoftmax(1))
    trainer = _trained(data.train, model, loss=nn.NLLLoss())
    model.train()
    test = data.test.select(range(100))
    interp = Interpretation.from_trainer(trainer, test)
    assert model.training  # the mode is given back
    with torch.no_grad():
        log_p = model.eval()(torch.stack([test[i][0] for i in range(len(test))]))
    torch.testing.assert_close(interp.probabilities, log_p.exp(), atol=1e-6, rtol=1e-5)
    expected = nn.functional.nll_loss(log_p, test.targets, reduction="none")
    torch.testing.assert_close(interp.losses, expected, atol=1e-5, rtol=1e-5)
    assert interp.report.loss == pytest.approx(float(expected.mean()), rel=1e-5)


def test_flower_files_are_shown_decoded_with_their_names(
    flowers_dir: Path, flowers_checkpoint: Path
) -> None:
    data = image_folder(
        flowers_dir,
        names=flowers_dir / "cat_to_name.json",
        eval_transform=presets.imagenet_eval(16, resize=18),
    )
    predictor = Predictor.from_checkpoint(flowers_checkpoint, device="cpu")
    interp = Interpretation.from_predictor(predictor, data.test)
    names = json.loads((flowers_dir / "cat_to_name.json").read_text(encoding="utf-8"))
    assert interp.classes == [names[i] for i in FLOWER_IDS]
    hand = _by_hand(predictor.model, data.test)
    np.testing.assert_allclose(interp.losses.numpy(), hand["losses"], rtol=1e-4, atol=1e-5)
    worst = int(interp.top_losses(1)[1][0])
    image = interp.image(worst)
    with Image.open(data.test.paths[worst]) as opened:
        expected = opened.convert("RGB")
        expected.thumbnail((256, 256))
    assert np.array_equal(image, np.asarray(expected))
    title = interp.plot_top_losses(1).axes[0].get_title()
    actual = interp.classes[hand["targets"][worst]]
    assert title.split(" / ")[0] == f"{interp.classes[hand['predicted'][worst]]}/{actual}"


def test_cifar_png_subset_through_the_trainer(cifar_png_dir: Path) -> None:
    seed_everything(0)
    data = image_folder(cifar_png_dir, val_fraction=0.2, seed=0).subset(["airplane", "bird"])
    model = create_model("mlp", in_features=3 * 32 * 32, hidden=[8], num_classes=2)
    trainer = _trained(data.train, model, steps=3)
    interp = Interpretation.from_trainer(trainer, data.val)
    assert interp.classes == ["airplane", "bird"]
    hand = _by_hand(model, data.val)
    pairs = Counter(zip(hand["targets"], hand["predicted"], strict=True))
    assert interp.most_confused() == sorted(
        [(interp.classes[a], interp.classes[p], n) for (a, p), n in pairs.items() if a != p],
        key=lambda cell: -cell[2],
    )
    assert interp.image(0).shape == (32, 32, 3)


def test_other_data_sets_show_the_model_input_with_normalization_undone(
    digits: tuple[Predictor, TensorImageDataset],
) -> None:
    model, data = digits[0].model, digits[1]
    predictor = Predictor(
        model, classes=data.classes, device="cpu", preprocess=_digits_preprocess()
    )
    interp = Interpretation.from_predictor(predictor, Subset(data, range(10)))
    expected = data.images[3, 0].float() / 255
    np.testing.assert_allclose(interp.image(3), expected.numpy(), atol=1e-5)
    assert "10 samples, 10 classes" in repr(interp)


def _digits_preprocess() -> Any:
    from visionkit.predict import Preprocess

    return Preprocess(mode="L", size=(28, 28), mean=(0.1307,), std=(0.3081,))


def test_bad_data_and_arguments_are_refused_with_the_fix(
    digits: tuple[Predictor, TensorImageDataset],
) -> None:
    predictor, data = digits
    with pytest.raises(DataError, match="empty data set"):
        Interpretation.from_predictor(predictor, data.select([]))
    wrong = TensorImageDataset(
        data.images[:4], torch.tensor([0, 1, 2, 11]), [str(i) for i in range(12)]
    )
    with pytest.raises(DataError, match="label 11, but the model has 10 classes"):
        Interpretation.from_predictor(Predictor(predictor.model, device="cpu"), wrong)
    with pytest.raises(ConfigurationError, match="12 class names"):
        Interpretation.from_predictor(Predictor(predictor.model, device="cpu"), wrong.select([0]))
    with pytest.raises(ConfigurationError, match="data set of"):
        Interpretation.from_predictor(predictor, 5)
    interp = Interpretation.from_predictor(predictor, data.select(range(20)))
    with pytest.raises(ConfigurationError, match="k must be"):
        interp.top_losses(0)
    with pytest.raises(ConfigurationError, match="min_count must be"):
        interp.most_confused(min_count=0)
