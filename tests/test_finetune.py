"""Stage 2 (Model-as-Loss and baselines) through the real training loop on toy data."""

from pathlib import Path

import lightning as L
import pytest
import torch

from mal.cli import main
from mal.training.config import load_config
from mal.training import EnhancementTask, finetune
from mal.training.datamodule import EnhancementData

TINY = "{preset: deepfilternet_16k, conv_ch: 8, emb_hidden: 32, df_hidden: 32}"


def _common(root: Path, out: Path) -> list[str]:
    return [
        f"output_dir={out}", f"data.root={root}", f"model={TINY}", "data.speech_dirs=[speech]",
        "data.noise_dirs=[noise]", "data.segment_seconds=0.5", "data.batch_size=4", "data.train_size=12",
        "data.val_size=4", "data.num_workers=0", "trainer.progress_bar=false", "trainer.log_every_n_steps=1",
        "optim.warmup_steps=0",
    ]


@pytest.fixture(scope="module")
def stage1(toy_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("stage1")
    args = ["train", *[f"{a}" for a in _common(toy_data, out)], "trainer.max_epochs=1"]
    assert main(args) == 0
    return out / "checkpoints" / "last.ckpt"


def _state(ckpt: Path) -> dict:
    return torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]


def _encoder_params(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and "running" not in k and "num_batches" not in k}


def _finetune(toy_data, tmp_path, stage1, variant, *extra, epochs=2, resume=False, source=None):
    out = tmp_path / variant
    cfg = load_config(None, [*_common(toy_data, out), f"finetune.variant={variant}", f"trainer.max_epochs={epochs}", *extra])
    finetune(cfg, source or stage1, resume=resume)
    return out / "checkpoints" / "last.ckpt"


def test_frozen_fe_trains_only_decoders_and_keeps_the_snapshot(toy_data, tmp_path, stage1):
    before, after = _state(stage1), _state(_finetune(toy_data, tmp_path, stage1, "mal-frozen-fe"))
    enc_before = _encoder_params(before, "model.encoder.")
    enc_after = _encoder_params(after, "model.encoder.")
    assert all(torch.equal(enc_before[k], enc_after[k]) for k in enc_before)  # own encoder frozen
    # BatchNorm statistics of the frozen encoder do not drift either
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("model.encoder.") and "running" in k)
    dec = [k for k in before if k.startswith("model.") and not k.startswith("model.encoder.") and "running" not in k and "num_batches" not in k]
    assert any(not torch.equal(before[k], after[k]) for k in dec)  # decoders did train
    snap = _encoder_params(after, "mal_loss.snapshot.")
    assert snap and all(torch.equal(snap[k], enc_before[k]) for k in snap)  # bit-identical snapshot


def test_frozen_snapshot_stays_while_whole_model_trains(toy_data, tmp_path, stage1):
    before, after = _state(stage1), _state(_finetune(toy_data, tmp_path, stage1, "mal-frozen"))
    enc_before = _encoder_params(before, "model.encoder.")
    snap = _encoder_params(after, "mal_loss.snapshot.")
    assert all(torch.equal(snap[k], enc_before[k]) for k in snap)
    enc_after = _encoder_params(after, "model.encoder.")
    assert any(not torch.equal(enc_before[k], enc_after[k]) for k in enc_before)


def test_baseline_continued_has_no_mal_term(toy_data, tmp_path, stage1):
    after = _state(_finetune(toy_data, tmp_path, stage1, "baseline-continued", epochs=1))
    assert not any(k.startswith("mal_loss.") for k in after)


class SnapshotProbe(L.Callback):
    """Before each backward (weights still as at batch start): does snapshot == encoder?"""

    def __init__(self):
        self.equal: list[tuple[int, int, bool]] = []

    def on_before_backward(self, trainer, task, loss):
        live = dict(task.model.encoder.named_parameters())
        snap = dict(task.mal_loss.snapshot.named_parameters())
        same = all(torch.equal(live[k], snap[k]) for k in live)
        self.equal.append((trainer.current_epoch, trainer.global_step, same))


def _probe_run(toy_data, tmp_path, stage1, *extra) -> list:
    cfg = load_config(None, [*_common(toy_data, tmp_path / "probe"), "finetune.variant=mal-dynamic", "trainer.max_epochs=2", *extra])
    task = EnhancementTask(cfg, model_spec=torch.load(stage1, weights_only=False)["hyper_parameters"]["model_spec"])
    probe = SnapshotProbe()
    trainer = L.Trainer(max_epochs=2, callbacks=[probe], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, num_sanity_val_steps=0, reload_dataloaders_every_n_epochs=1)
    trainer.fit(task, datamodule=EnhancementData(cfg))
    return probe.equal


def test_dynamic_snapshot_is_retaken_exactly_at_epoch_starts(toy_data, tmp_path, stage1):
    seen = _probe_run(toy_data, tmp_path, stage1)
    steps_per_epoch = 3
    for epoch, step, same in seen:
        assert same == (step % steps_per_epoch == 0), (epoch, step)


def test_dynamic_snapshot_every_k_steps(toy_data, tmp_path, stage1):
    seen = _probe_run(toy_data, tmp_path, stage1, "finetune.refresh_every_steps=2")
    for epoch, step, same in seen:
        assert same == (step % 3 == 0 or step % 2 == 0), (epoch, step)


def test_resume_continues_with_the_saved_snapshot(toy_data, tmp_path, stage1):
    first = _finetune(toy_data, tmp_path, stage1, "mal-frozen", epochs=1)
    snap_first = _encoder_params(_state(first), "mal_loss.snapshot.")
    # resume, deliberately naming another "stage-1" checkpoint: the saved snapshot must win
    other = tmp_path / "other.ckpt"
    ckpt = torch.load(stage1, weights_only=False)
    ckpt["state_dict"] = {k: (v + 1.0 if v.is_floating_point() else v) for k, v in ckpt["state_dict"].items()}
    torch.save(ckpt, other)
    final = _finetune(toy_data, tmp_path, stage1, "mal-frozen", epochs=2, resume=True, source=other)
    snap_final = _encoder_params(_state(final), "mal_loss.snapshot.")
    assert all(torch.equal(snap_first[k], snap_final[k]) for k in snap_first)
    assert torch.load(final, weights_only=False)["global_step"] == 6  # two epochs of 3 steps completed


def test_ssl_variant_without_checkpoint_stops_at_start_naming_the_path(toy_data, tmp_path, stage1, capsys):
    args = ["finetune", "--from", str(stage1), *_common(toy_data, tmp_path / "w"), "finetune.variant=wavlm",
            f"loss.ssl.ssl_model_path={tmp_path / 'no-wavlm'}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no-wavlm" in err and "not found" in err


def test_mal_balance_makes_the_two_terms_equal_at_the_start_and_is_checkpointed(toy_data, tmp_path, stage1):
    from mal.inference import load_model

    ckpt = _finetune(toy_data, tmp_path, stage1, "mal-frozen", "loss.mal.balance=2", "loss.mal.weight=1.0", epochs=1)
    scale = _state(ckpt)["mal_balance"]
    assert float(scale) > 1.0  # at weight 1, L_mal is far smaller than L_df
    # Re-measure on the same first batches from the same start: weight * scale * L_mal == L_df.
    cfg = load_config(None, [*_common(toy_data, tmp_path / "m"), "finetune.variant=mal-frozen", "loss.mal.balance=2"])
    start = load_model(stage1)
    task = EnhancementTask(cfg, model_spec=start.config_dict())
    task.model.load_state_dict(start.state_dict())
    task.take_snapshot()
    data = EnhancementData(cfg)
    data.setup("fit")
    batches = list(zip(range(2), data.train_dataloader()))
    assert torch.allclose(task.measure_balance((b for _, b in batches), 2), scale, rtol=1e-4)
    with torch.no_grad():
        task.eval()
        df = sum(float(task.df_loss(task.model(n), c)) for _, (n, c) in batches)
        mal = sum(float(task.mal_loss(task.model(n), c)) for _, (n, c) in batches)
    assert abs(float(scale) * mal - df) < 1e-4 * df
