from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from snnergy.config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig
from snnergy.data import load_dataset, make_loader
from snnergy.models import build_model
from snnergy.errors import CheckpointError, ConfigError, TrainingError
from snnergy.experiments import train
from snnergy.train_state import STATE_FILE, load_train_state
from snnergy import training
from snnergy.training import fit, load_checkpoint, resolve_device


def blobs_config(**train_kw) -> ExperimentConfig:
    return ExperimentConfig(
        data=DataConfig(dataset="synthetic-blobs", batch_size=32),
        model=ModelConfig(name="tiny-mlp"),
        train=TrainConfig(**{"epochs": 2, "lr": 1e-2, **train_kw}),
        device="cpu",
    )


def test_digits_lenet_learns_well_above_chance() -> None:
    cfg = ExperimentConfig(
        data=DataConfig(dataset="digits", batch_size=32),
        model=ModelConfig(name="mlp"),
        train=TrainConfig(epochs=3, lr=3e-3),
        device="cpu",
    )
    trained = train(cfg)
    # 10 classes: chance is 10 %; three epochs of an MLP on digits reach > 85 %.
    assert trained.history[-1].test_accuracy > 0.85
    assert [h.epoch for h in trained.history] == [1, 2, 3]


def test_regularizer_raises_sparsity_and_logs_penalty() -> None:
    plain = train(blobs_config())
    sparse = train(blobs_config(regularizer="l1", strength=3.0))
    assert sparse.history[-1].penalty > 0 and plain.history[-1].penalty == 0
    assert sparse.history[-1].sparsity > plain.history[-1].sparsity


def test_same_seed_same_weights() -> None:
    a = train(blobs_config()).model.state_dict()
    b = train(blobs_config()).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    trained = train(blobs_config(), out=tmp_path)
    ckpt = load_checkpoint(tmp_path / "checkpoint")
    x = trained.splits.test_x[:16]
    assert torch.equal(trained.model(x), ckpt.model(x))
    assert ckpt.config == trained.config
    assert len(ckpt.history) == 2


def test_nan_stops_training_and_keeps_last_good_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The task loss turns NaN once the first epoch has been evaluated: epoch 1 is checkpointed,
    # epoch 2 diverges at its first batch.
    import snnergy.training as training

    evaluated = []
    real_evaluate, real_loss = training.evaluate, training.F.cross_entropy
    monkeypatch.setattr(training, "evaluate", lambda *a, **k: evaluated.append(1) or real_evaluate(*a, **k))
    monkeypatch.setattr(training.F, "cross_entropy",
                        lambda *a, **k: real_loss(*a, **k) * (math.nan if evaluated else 1.0))
    with pytest.raises(TrainingError, match="training diverged: loss is nan at epoch 2, batch 1"):
        train(blobs_config(epochs=3), out=tmp_path)
    checkpoint = load_checkpoint(tmp_path / "checkpoint")  # the last good one, which loads
    assert [h["epoch"] for h in checkpoint.history] == [1]
    assert load_train_state(tmp_path / "checkpoint" / STATE_FILE).epoch == 1


def test_diverging_run_keeps_the_earlier_checkpoint_of_its_folder(tmp_path: Path) -> None:
    # A learning rate of 1e30 with plain SGD overflows the weights within a few steps.
    config = blobs_config(epochs=3, lr=1e30, optimizer="sgd", schedule="constant")
    with pytest.raises(TrainingError, match="training diverged: loss is (nan|inf)"):
        train(config, out=tmp_path)
    assert not (tmp_path / "checkpoint" / "model.safetensors").exists()  # no epoch finished, nothing written


def test_a_folder_of_another_configuration_is_refused_and_kept(tmp_path: Path) -> None:
    train(blobs_config(epochs=1), out=tmp_path)
    weights = (tmp_path / "checkpoint" / "model.safetensors").read_bytes()
    with pytest.raises(ConfigError, match=r"another configuration \(train.epochs: 1 stored, 3 now\)"):
        train(blobs_config(epochs=3), out=tmp_path)
    assert (tmp_path / "checkpoint" / "model.safetensors").read_bytes() == weights


def test_a_training_batch_record_holds_only_that_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    # Regression: the activations recorded while evaluating at the end of an epoch were kept and
    # joined to the first training batch of the next epoch, so its penalty saw the test samples.
    import snnergy.training as training

    seen = []
    real = training.bind_penalty

    def spy(*args, **kwargs):
        penalty = real(*args, **kwargs)

        def call(record):
            seen.append({name: len(a) for name, a in record.activations.items()})
            return penalty(record)

        call.needs_layer_inputs = penalty.needs_layer_inputs
        return call

    monkeypatch.setattr(training, "bind_penalty", spy)
    train(blobs_config(epochs=2, regularizer="l1", strength=0.1))
    assert seen and all(n <= 32 for sizes in seen for n in sizes.values())  # batch_size 32


def run_plain_and_resumed(config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An uninterrupted run's weights, and a run stopped after epoch 1 then resumed."""
    import snnergy.experiments.pipeline as pipeline

    plain = train(config, out=tmp_path / "plain").model.state_dict()
    real = pipeline.save_train_state

    def stop_after_first(path, state):
        real(path, state)
        if state.epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "save_train_state", stop_after_first)
    with pytest.raises(KeyboardInterrupt):
        train(config, out=tmp_path / "cut")
    monkeypatch.setattr(pipeline, "save_train_state", real)
    return plain, train(config, out=tmp_path / "cut")


def test_resumed_training_equals_an_uninterrupted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = blobs_config(epochs=3, regularizer="synops", strength=1e-3)
    plain, resumed = run_plain_and_resumed(config, tmp_path, monkeypatch)
    assert resumed.resumed_from == 1 and [h.epoch for h in resumed.history] == [1, 2, 3]
    state = resumed.model.state_dict()
    assert all(torch.equal(plain[k], state[k]) for k in plain)  # penalty scales, optimizer, RNG restored


def test_bad_checkpoints_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint folder not found"):
        load_checkpoint(tmp_path / "missing")
    train(blobs_config(epochs=1), out=tmp_path)
    folder = tmp_path / "checkpoint"
    meta = folder / "checkpoint.json"
    text = meta.read_text()
    meta.write_text(text[: len(text) // 2])
    with pytest.raises(CheckpointError, match="not a valid JSON file"):
        load_checkpoint(folder)
    meta.write_text(text)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_checkpoint(folder)
    weights.unlink()
    with pytest.raises(CheckpointError, match="weights file not found"):
        load_checkpoint(folder)


def test_checkpoint_with_wrong_shapes_is_refused(tmp_path: Path) -> None:
    from snnergy.checkpoints import load_tensors, save_tensors

    train(blobs_config(epochs=1), out=tmp_path)
    weights = tmp_path / "checkpoint" / "model.safetensors"
    tensors = load_tensors(weights)
    first = next(iter(tensors))
    tensors[first] = torch.zeros(3, 3)
    save_tensors(weights, tensors)
    with pytest.raises(CheckpointError, match=f"tensor '{first}' has shape"):
        load_checkpoint(tmp_path / "checkpoint")


def test_config_errors_before_training() -> None:
    with pytest.raises(ConfigError, match="unknown regularizer 'l3'"):
        train(blobs_config(regularizer="l3"))
    with pytest.raises(ConfigError, match="unknown optimizer"):
        train(blobs_config(optimizer="adamw"))
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")


def test_a_damaged_training_state_is_one_clear_error(tmp_path: Path) -> None:
    train(blobs_config(epochs=1), out=tmp_path)
    state = tmp_path / "checkpoint" / STATE_FILE
    data = state.read_bytes()
    state.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(CheckpointError, match=r"train_state.safetensors: not a valid safetensors file"):
        train(blobs_config(epochs=1), out=tmp_path)
    state.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")  # a valid, empty safetensors file
    with pytest.raises(CheckpointError, match="not a snnergy training state"):
        train(blobs_config(epochs=1), out=tmp_path)


# --------------------------------------------------------------------------- trained thresholds, init_from


def qcfs_config(**train_kw) -> ExperimentConfig:
    base = blobs_config(**train_kw)
    return replace(base, model=ModelConfig(name="tiny-mlp", activation="qcfs", levels=4))


def test_a_qcfs_net_learns_and_trains_its_threshold() -> None:
    from snnergy.layers import initialize_thresholds

    config = qcfs_config(epochs=3)
    torch.manual_seed(config.seed)
    splits = load_dataset(config.data, seed=config.seed)
    fresh = build_model(config.model, splits.input_shape, splits.num_classes)
    first_x = next(iter(make_loader(splits.train_x, splits.train_y, 32, shuffle=True, seed=config.seed)))[0]
    start = initialize_thresholds(fresh, first_x)["relu1"][0]  # what training starts from (first batch)
    trained = train(config)
    losses = [h.task_loss for h in trained.history]
    assert losses[-1] < losses[0] and trained.history[-1].test_accuracy > 0.8  # 4 blobs: chance 25 %
    assert trained.model.relu1.threshold.item() != pytest.approx(start, rel=1e-3)  # theta moved by its gradient
    assert start != 1.0


def test_thresholds_start_from_the_first_training_batch() -> None:
    # epochs = 0: nothing but the start. By hand: the first batch of the seeded shuffling loader
    # through fc1, then the 99.9th percentile of its positive part (initial_threshold).
    from snnergy.layers import initial_threshold

    config = replace(qcfs_config(epochs=0), model=ModelConfig("tiny-mlp", activation="clip", channelwise_threshold=True))
    torch.manual_seed(config.seed)
    splits = load_dataset(config.data, seed=config.seed)
    model = build_model(config.model, splits.input_shape, splits.num_classes)
    x = next(iter(make_loader(splits.train_x, splits.train_y, 32, shuffle=True, seed=config.seed)))[0]
    with torch.no_grad():
        expected = initial_threshold(model.fc1(model.flatten(x)), channels=16)
    fit(model, splits, config.train, batch_size=32, seed=config.seed)
    assert torch.equal(model.relu1.threshold.detach(), expected)
    untouched = build_model(config.model, splits.input_shape, splits.num_classes)
    fit(untouched, splits, config.train, batch_size=32, init_thresholds=False)
    assert torch.equal(untouched.relu1.threshold.detach(), torch.ones(16))


def test_a_resumed_qcfs_run_does_not_restart_its_thresholds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import snnergy.training as training

    calls: list[list[str]] = []
    real_init = training.initialize_thresholds
    monkeypatch.setattr(training, "initialize_thresholds",
                        lambda model, x, names=None: calls.append(list(names)) or real_init(model, x, names))
    config = qcfs_config(epochs=3)
    plain, resumed = run_plain_and_resumed(config, tmp_path, monkeypatch)
    assert calls == [["relu1"], ["relu1"]]  # the plain run and the cut run; not the resumed one
    state = resumed.model.state_dict()
    assert all(torch.equal(plain[k], state[k]) for k in plain) and "relu1.threshold" in plain


def test_init_from_loads_the_weights_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import snnergy.training as training

    relu = train(blobs_config(epochs=1), out=tmp_path / "relu").model.state_dict()
    config = replace(qcfs_config(epochs=0, init_from=str(tmp_path / "relu")))
    started = train(config).model
    for name, tensor in relu.items():  # every weight of the ReLU run, to the bit
        assert torch.equal(started.state_dict()[name], tensor), name
    assert started.relu1.threshold.item() != 1.0  # the threshold came from the data
    # a QCFS checkpoint brings its thresholds: nothing starts from data; the checkpoint/ folder works too
    train(qcfs_config(epochs=1), out=tmp_path / "qcfs")
    calls: list[object] = []
    monkeypatch.setattr(training, "initialize_thresholds", lambda *a, **k: calls.append(a))
    source = load_checkpoint(tmp_path / "qcfs" / "checkpoint").model.state_dict()
    again = train(qcfs_config(epochs=0, init_from=str(tmp_path / "qcfs" / "checkpoint"))).model.state_dict()
    assert calls == [] and all(torch.equal(again[k], source[k]) for k in source)


def test_init_from_a_mismatched_or_missing_checkpoint_is_one_clear_error(tmp_path: Path) -> None:
    train(blobs_config(epochs=1), out=tmp_path / "relu")
    wide = replace(qcfs_config(epochs=1, init_from=str(tmp_path / "relu")),
                   model=ModelConfig("tiny-mlp", width=2.0, activation="qcfs"))
    with pytest.raises(CheckpointError, match=r"train.init_from: .*relu.*: tensor 'fc1.bias' has shape \(16,\) "
                                              r"in the checkpoint, this model expects \(32,\)"):
        train(wide)
    other = replace(blobs_config(epochs=1, init_from=str(tmp_path / "relu")), model=ModelConfig("mlp"))
    with pytest.raises(CheckpointError, match="this model's tensor 'fc3.bias' is not in the checkpoint"):
        train(other)
    train(qcfs_config(epochs=1), out=tmp_path / "qcfs")
    with pytest.raises(CheckpointError, match="the checkpoint's tensor 'relu1.threshold' has no place in this model"):
        train(blobs_config(epochs=1, init_from=str(tmp_path / "qcfs")))  # a QCFS run into a ReLU model
    with pytest.raises(CheckpointError, match=f"train.init_from: {tmp_path / 'nothing'}: no checkpoint there"):
        train(blobs_config(epochs=1, init_from=str(tmp_path / "nothing")))


# --------------------------------------------------------------------------- knowledge distillation


def kl_to(student: torch.nn.Module, teacher: torch.nn.Module, x: torch.Tensor, temperature: float) -> float:
    """Mean KL(softmax(teacher / T) || softmax(student / T)) over ``x``."""
    with torch.no_grad():
        log_s = torch.log_softmax(student(x) / temperature, 1)
        log_t = torch.log_softmax(teacher(x) / temperature, 1)
        return float((log_t.exp() * (log_t - log_s)).sum(1).mean())


def test_distillation_with_weight_zero_trains_exactly_like_plain_cross_entropy(tmp_path: Path) -> None:
    # w = 0: the loss is 1 * CE + 0 * T^2 KL, whose gradient is CE's to the bit; the teacher is loaded
    # without drawing random numbers, so the seeded run takes the very same steps.
    train(replace(blobs_config(epochs=1), seed=5), out=tmp_path / "teacher")
    plain = train(blobs_config(epochs=1))
    distilled = train(blobs_config(epochs=1, distill=str(tmp_path / "teacher"), distill_weight=0.0))
    a, b = plain.model.state_dict(), distilled.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert plain.history[0].distillation == 0.0 and distilled.history[0].distillation > 0  # logged, not used
    assert plain.history[0].task_loss == distilled.history[0].task_loss


def test_a_distilled_student_moves_toward_its_teacher(tmp_path: Path) -> None:
    # The teacher is another width and activation (a ReLU tiny-mlp of width 2) than the QCFS student,
    # and it is wrong on purpose: its output rows are rolled by one, so it predicts class y + 1 (mod 4)
    # for a blob of class y. With w = 1 the student learns from the teacher alone, so it must follow
    # the teacher's mapping and miss the labels; the KL to the teacher must drop.
    from snnergy.training import save_checkpoint

    teacher_config = replace(blobs_config(epochs=3), model=ModelConfig("tiny-mlp", width=2.0), seed=7)
    teacher = train(teacher_config).model
    with torch.no_grad():
        for tensor in (teacher.fc2.weight, teacher.fc2.bias):
            tensor.copy_(tensor.roll(1, 0))  # new logit k = old logit k - 1
    save_checkpoint(tmp_path / "shifted", teacher, teacher_config, input_shape=(1, 8, 8), num_classes=4)
    config = qcfs_config(epochs=4, distill=str(tmp_path / "shifted"), distill_weight=1.0)  # default T = 4
    splits = load_dataset(config.data, seed=config.seed)
    torch.manual_seed(config.seed)
    fresh = build_model(config.model, splits.input_shape, splits.num_classes)  # the student's start
    distilled = train(config)
    x, y = splits.test_x, splits.test_y
    with torch.no_grad():
        said, learned = teacher(x).argmax(1), distilled.model(x).argmax(1)
    assert float((said == (y + 1) % 4).float().mean()) > 0.9  # the teacher is wrong as built
    assert float((learned == said).float().mean()) > 0.9  # the student follows it ...
    assert distilled.history[-1].test_accuracy < 0.25  # ... and not the labels (chance: 25 %)
    assert kl_to(distilled.model, teacher, x, 1.0) < 0.5 * kl_to(fresh, teacher, x, 1.0)
    logged = [h.distillation for h in distilled.history]
    assert logged[-1] < logged[0] and all(v > 0 for v in logged)


def test_a_resumed_distilled_run_equals_an_uninterrupted_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train(replace(blobs_config(epochs=1), seed=3), out=tmp_path / "teacher")
    config = blobs_config(epochs=3, distill=str(tmp_path / "teacher"), regularizer="l1", strength=0.1)
    plain, resumed = run_plain_and_resumed(config, tmp_path, monkeypatch)
    assert resumed.resumed_from == 1 and [h.epoch for h in resumed.history] == [1, 2, 3]
    assert all(h.distillation > 0 for h in resumed.history)
    state = resumed.model.state_dict()
    assert all(torch.equal(plain[k], state[k]) for k in plain)


def test_a_bad_teacher_is_one_clear_error_before_training(tmp_path: Path) -> None:
    from snnergy.training import save_checkpoint

    out = tmp_path / "out"
    with pytest.raises(CheckpointError, match=f"train.distill: {tmp_path / 'nothing'}: no checkpoint there"):
        train(blobs_config(epochs=1, distill=str(tmp_path / "nothing")), out=out)
    # another class count: a digits model (1, 8, 8) with 10 classes for the 4-class blobs
    digits = ExperimentConfig(model=ModelConfig("tiny-mlp"))
    save_checkpoint(tmp_path / "digits", build_model(digits.model, (1, 8, 8), 10), digits,
                    input_shape=(1, 8, 8), num_classes=10)
    with pytest.raises(CheckpointError, match=r"train.distill: .*digits: the teacher takes inputs of shape \(1, 8, 8\) "
                                              r"with 10 classes, this run's data have shape \(1, 8, 8\) with 4 classes"):
        train(blobs_config(epochs=1, distill=str(tmp_path / "digits")), out=out)
    # another input shape
    save_checkpoint(tmp_path / "small", build_model(digits.model, (1, 2, 2), 4), digits, input_shape=(1, 2, 2),
                    num_classes=4)
    with pytest.raises(CheckpointError, match=r"shape \(1, 2, 2\) with 4 classes, this run's data have shape \(1, 8, 8\)"):
        train(blobs_config(epochs=1, distill=str(tmp_path / "small")), out=out)  # the checkpoint folder itself
    # a corrupt teacher: truncated weights
    weights = tmp_path / "small" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:50])
    with pytest.raises(CheckpointError, match=r"train.distill: .*model.safetensors: not a valid safetensors file"):
        train(blobs_config(epochs=1, distill=str(tmp_path / "small")), out=out)
    assert not (out / "checkpoint").exists()  # no step taken, nothing written


@pytest.mark.parametrize("kernels", ["auto", "off"])
def test_the_logged_sparsity_counts_every_zero_exactly(monkeypatch: pytest.MonkeyPatch, kernels: str) -> None:
    # 2 x 3 x 4 x 5 = 120 values: 7 zeros (-0.0 among them), a NaN and an infinity that are not
    monkeypatch.setenv("SNNERGY_KERNELS", kernels)
    a = torch.arange(1.0, 121.0).view(2, 3, 4, 5)
    a.view(-1)[[0, 5, 17, 40, 41, 99, 119]] = torch.tensor([0.0, -0.0, 0.0, 0.0, -0.0, 0.0, 0.0])
    a.view(-1)[[1, 2]] = torch.tensor([float("nan"), float("inf")])
    assert training._zeros(a) == 7
    assert training._zeros(a.transpose(1, 3)) == 7  # not contiguous: the PyTorch count
