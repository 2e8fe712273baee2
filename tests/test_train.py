import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import same_lamfast
from lamfast.data.synthetic import make_synthetic
from lamfast.infer import predict
from lamfast.model import LAM
from lamfast.train import TrainConfig, Trainer, TrainingDiverged, _epoch_order, epoch_max_blank, train

TINY = dict(width=16, encoder_heads=[2], encoder_ffn=[32], decoder_heads=[2], decoder_ffn=[32],
            head_mlp=[32])


@pytest.fixture(scope="module")
def stars():
    cat = make_synthetic(600, seed=1).catalog
    return cat.rows(slice(0, 500)), cat.rows(slice(500, 600))


def config(tmp_path, **kw):
    base = dict(model_overrides=TINY, epochs=2, batch_size=64, lr=3e-3, warmup_steps=5,
                n_outputs=2, exclude_inputs=True, eval_stars=100, out_dir=str(tmp_path / "run"))
    return TrainConfig(**{**base, **kw})


def test_loss_falls_and_outputs_are_written(stars, tmp_path):
    model, history = train(config(tmp_path, epochs=4), *stars, progress=False)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert np.isfinite(history[-1]["val_loss"]) and history[-1]["teff_scatter"] > 0
    run = tmp_path / "run"
    assert (run / "checkpoint.pt").exists() and (run / "model" / "config.json").exists()
    assert len((run / "log.csv").read_text().splitlines()) == 1 + 4


def test_resume_is_bit_for_bit(stars, tmp_path):
    straight, _ = train(config(tmp_path / "a", epochs=3), *stars, progress=False)
    train(config(tmp_path / "b", epochs=1), *stars, progress=False)
    ckpt = tmp_path / "b" / "run" / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=False)
    assert state["elapsed_s"] > 0
    torch.save({**state, "elapsed_s": 1000.0}, ckpt)  # as if the first run had taken long
    cfg = config(tmp_path / "b", epochs=3)
    resumed, history = train(cfg, *stars, resume=True, progress=False)
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    assert 1000.0 < history[0]["elapsed_s"] < history[1]["elapsed_s"]  # wall time carries over


def test_resume_refuses_other_settings(stars, tmp_path):
    train(config(tmp_path, epochs=1), *stars, progress=False)
    with pytest.raises(ValueError, match="other settings"):
        train(config(tmp_path, epochs=2, lr=1.0), *stars, resume=True, progress=False)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(config(tmp_path / "none"), *stars, resume=True, progress=False)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(stars, tmp_path, monkeypatch):
    trainer = Trainer(config(tmp_path, epochs=1), *stars)
    trainer.fit(progress=False)
    good = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    import lamfast.train as t

    monkeypatch.setattr(t, "gaussian_nll", lambda *a: torch.tensor(float("nan"), requires_grad=True))
    trainer.cfg.epochs = 3
    with pytest.raises(TrainingDiverged, match="loss is nan at epoch 1"):
        trainer.fit(progress=False)
    kept = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert kept["epoch"] == good["epoch"] == 1


def test_ranks_draw_disjoint_shards_covering_the_epoch():
    order = _epoch_order(0, 5, 1001)
    world = 3
    per_rank = 1001 // world
    shards = [order[r::world][:per_rank] for r in range(world)]
    together = np.concatenate(shards)
    assert len(np.unique(together)) == len(together) == per_rank * world
    assert not np.array_equal(order, _epoch_order(0, 6, 1001))


@pytest.mark.parametrize("share, unblanked", [(0.0, 0), (0.25, 3), (0.5, 6), (1.0, 12)])
def test_full_context_epochs_are_spread_evenly(share, unblanked):
    cfg = TrainConfig(max_blank=59, full_context_share=share)
    blanks = [epoch_max_blank(cfg, e) for e in range(12)]
    assert blanks.count(0) == unblanked and set(blanks) <= {0, 59}
    if 0 < share < 1:  # never two unblanked epochs in a row
        assert all(a or b for a, b in zip(blanks, blanks[1:]))


def test_full_context_share_out_of_range_is_refused():
    with pytest.raises(ValueError, match="full_context_share"):
        epoch_max_blank(TrainConfig(full_context_share=1.5), 0)


def test_cli_with_two_gloo_processes(tmp_path):
    from lamfast.io.paper_hdf5 import write_paper_hdf5

    cat = make_synthetic(300, seed=2).catalog
    cat.extra["split"] = np.where(np.arange(300) < 250, 0, 1).astype(np.int8)
    data = tmp_path / "data.h5"
    write_paper_hdf5(data, cat)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(29500 + os.getpid() % 1000), "-m", "lamfast.cli", "train",
           str(data), "--epochs", "1", "--batch-size", "32", "--no-progress", "--device", "cpu",
           "--model-overrides", '{"width": 16, "encoder_heads": [2], "encoder_ffn": [32], '
           '"decoder_heads": [2], "decoder_ffn": [32], "head_mlp": [32]}',
           "--out-dir", str(tmp_path / "ddp")]
    kw = same_lamfast(tmp_path)
    kw["env"]["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "ddp" / "checkpoint.pt").exists()


def test_export_checkpoint_gives_the_trained_model(stars, tmp_path):
    from lamfast.model import LAM
    from lamfast.train import export_checkpoint

    model, _ = train(config(tmp_path, epochs=1), *stars, progress=False)
    exported = export_checkpoint(tmp_path / "run" / "checkpoint.pt", tmp_path / "exported")
    reloaded = LAM.load(tmp_path / "exported")
    for m in (exported, reloaded):
        for (name, a), (_, b) in zip(model.state_dict().items(), m.state_dict().items()):
            assert torch.equal(a.cpu(), b), name  # trained on the GPU where there is one
    assert reloaded.normalizer == model.normalizer


def test_init_from_starts_at_the_saved_weights_and_normalisation(stars, tmp_path):
    first, _ = train(config(tmp_path / "a", epochs=1), *stars, progress=False)
    saved = tmp_path / "a" / "run" / "model"
    trainer = Trainer(config(tmp_path / "b", init_from=str(saved), dropout=0.0), *stars)
    for (name, a), (_, b) in zip(first.state_dict().items(), trainer.model.state_dict().items()):
        assert torch.equal(a, b), name
    np.testing.assert_array_equal(trainer.normalizer.center, first.normalizer.center)
    wider = {**TINY, "width": 32}
    with pytest.raises(ValueError, match="another architecture.*width"):
        Trainer(config(tmp_path / "c", init_from=str(saved), model_overrides=wider), *stars)


def test_init_from_may_widen_hidden_layers_and_keeps_the_predictions(stars, tmp_path):
    train(config(tmp_path / "a", epochs=1), *stars, progress=False)
    saved_dir = str(tmp_path / "a" / "run" / "model")
    saved = LAM.load(saved_dir)
    grown = {**TINY, "encoder_ffn": [48], "decoder_ffn": [40], "head_mlp": [64]}
    trainer = Trainer(config(tmp_path / "b", init_from=saved_dir, model_overrides=grown,
                             dropout=0.0), *stars)
    new = trainer.model.eval()
    assert new.encoder[0].dense_1.weight.shape == (48, 16)
    assert new.head[0].weight.shape == (64, 16)
    assert new.mu_out.weight[:, 32:].abs().sum() == 0           # new units start switched off
    assert new.decoder[0].dense_1.weight[32:].abs().sum() > 0   # ...but are not dead
    train_cat = stars[0]
    x = train_cat.select(["bp0", "bp1", "rp0", "jh", "bprp"])
    rows = np.isfinite(x.values).all(1)
    before = predict(saved, x.values[rows], x.columns, request=["teff", "logg"], device="cpu")
    after = predict(new, x.values[rows], x.columns, request=["teff", "logg"], device="cpu")
    for k in ("teff", "logg"):
        np.testing.assert_allclose(np.asarray(after[k]), np.asarray(before[k]), rtol=1e-5)
    narrower = {**TINY, "decoder_ffn": [16]}
    with pytest.raises(ValueError, match="decoder_ffn.*may grow"):
        Trainer(config(tmp_path / "c", init_from=saved_dir, model_overrides=narrower), *stars)
