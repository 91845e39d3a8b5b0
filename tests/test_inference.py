"""How scoring runs a network: BatchNorm folded into a frozen copy, only the scored frame decoded,
clips as strided views, bf16 autocast / memory format as `inference.*` says. Each must give the
scores the plain forward pass gives (up to float rounding; bf16 within its rounding)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pseudovad import config as config_mod
from pseudovad.data.clips import to_tensor
from pseudovad.evaluation.psnr import frame_psnr
from pseudovad.evaluation.streaming import Detector
from pseudovad.geometry import ClipGeometry
from pseudovad.models import build_model
from pseudovad.models.autoencoder2d import ImageAutoencoder
from pseudovad.models.autoencoder3d import VideoAutoencoder
from pseudovad.models.inference import fold_batchnorm, inference_copy
from pseudovad.models.model_file import model_meta

WIDTH = [4, 6, 8, 8]


def _trained_stats(net: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    """A few training-mode passes, so running statistics are not the identity BatchNorm starts with
    (cumulative ones: activations stay normalised and the output varies with the input, so a
    wrong frame or tap shows)."""
    torch.manual_seed(1)
    for m in net.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
            m.momentum = None
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(shape) * 2 - 1)
    return net.eval()


@pytest.fixture(scope="module")
def video_net():
    torch.manual_seed(0)
    return _trained_stats(VideoAutoencoder(1, WIDTH), (2, 1, 16, 16, 32))


def test_folding_batchnorm_keeps_the_outputs_and_leaves_the_model_alone(video_net):
    x = torch.rand(2, 1, 16, 16, 32) * 2 - 1
    before = {k: v.clone() for k, v in video_net.state_dict().items()}
    with torch.no_grad():
        want = video_net(x)
        net = inference_copy(video_net)
        got = net(x)
    assert not any(isinstance(m, nn.BatchNorm3d) for m in net.modules())
    assert sum(isinstance(m, nn.BatchNorm3d) for m in video_net.modules()) == 7    # the original keeps its layers
    assert all(torch.equal(before[k], v) for k, v in video_net.state_dict().items())
    assert not any(p.requires_grad for p in net.parameters())
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_folding_needs_eval_mode_running_statistics():
    net = ImageAutoencoder(3, [4, 6, 8, 8]).train()
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(net)
    _trained_stats(net, (4, 3, 32, 32))
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        want = net(x)
        n = fold_batchnorm(net)
        assert n > 0 and not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
        torch.testing.assert_close(net(x), want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("t", [0, 1, 7, 8, 14, 15])
def test_reconstruct_frame_is_that_frame_of_the_full_reconstruction(video_net, t):
    x = torch.rand(3, 1, 16, 16, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(video_net.reconstruct_frame(x, t), video_net(x)[:, :, t], atol=1e-5, rtol=1e-4)
        folded = inference_copy(video_net, torch.channels_last_3d)
        xl = x.contiguous(memory_format=torch.channels_last_3d)
        torch.testing.assert_close(folded.reconstruct_frame(xl, t), video_net(x)[:, :, t], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("t", [0, 1, 8, 14, 15])
@pytest.mark.parametrize("folded", [False, True])
def test_clips_of_a_window_share_the_first_layer_and_keep_each_clips_values(video_net, t, folded):
    window = torch.rand(1, 1, 16 + 5, 16, 32) * 2 - 1                   # 6 clips
    net = inference_copy(video_net, torch.channels_last_3d) if folded else video_net
    fmt = torch.channels_last_3d if folded else torch.contiguous_format
    clips = window[0].unfold(1, 16, 1).permute(1, 0, 4, 2, 3).contiguous(memory_format=fmt)
    with torch.no_grad():
        want = net(clips)[:, :, t]
        got = net.reconstruct_frame_of_clips(window.contiguous(memory_format=fmt), 16, t)
    assert got.shape == (6, 1, 16, 32)
    assert (want[0] - want[1]).abs().max() > 0.05        # clips differ: a wrong frame would show
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_clips_of_a_window_need_a_whole_clip(video_net):
    with pytest.raises(ValueError, match="window"):
        video_net.reconstruct_frame_of_clips(torch.zeros(1, 1, 15, 16, 32), 16, 8)


def test_reconstruct_frame_falls_back_to_the_full_pass_in_training_mode(video_net):
    x = torch.rand(2, 1, 16, 16, 32) * 2 - 1
    video_net.train()
    try:
        torch.manual_seed(0)
        with torch.no_grad():
            got = video_net.reconstruct_frame(x, 8)      # batch statistics: every frame matters
            want = video_net(x)[:, :, 8]
        torch.testing.assert_close(got, want)
    finally:
        video_net.eval()
    with pytest.raises(IndexError, match="frame 16 of a 16-frame"):
        video_net.reconstruct_frame(x, 16)


def _plain_psnr(net: nn.Module, meta: dict, frames: np.ndarray) -> np.ndarray:
    """Every clip's scored-frame PSNR the straightforward way: each clip stacked, whole forward, fp32."""
    g = ClipGeometry.from_meta(meta)
    out = []
    with torch.no_grad():
        for s in g.starts(len(frames)):
            clip = to_tensor(np.stack([frames[s + j * g.frame_step] for j in range(g.clip_len)]), "tanh")[None]
            out.append(float(frame_psnr(net(clip)[:, :, g.scored_index], clip[:, :, g.scored_index], "tanh")[0]))
    return np.asarray(out)


@pytest.mark.parametrize("amp, memory_format, frame_step, batch", [
    ("off", "contiguous", 1, 4), ("off", "channels_last", 2, 3), ("bf16", "channels_last", 1, 5),
    ("bf16", "contiguous", 1, 1)])
def test_detector_scores_like_the_plain_forward_pass(tmp_path, video_net, amp, memory_format, frame_step, batch):
    cfg = config_mod.from_dict({"data": {"size": [16, 32], "channels": 1},
                                "model": {"ltgpa": {"width": WIDTH, "g_width": [4, 6, 8]}}})
    net = build_model(cfg)
    net.load_state_dict(video_net.state_dict())
    net.eval()
    meta = {**model_meta(cfg), "frame_step": frame_step}
    g = ClipGeometry.from_meta(meta)
    frames = np.random.default_rng(0).integers(0, 256, (g.span + 9, 16, 32), dtype=np.uint8)
    want = _plain_psnr(net, meta, frames)
    det = Detector(net, meta, "cpu", batch, amp, memory_format)
    got = det.score_video(frames)[g.first_scored:g.first_scored + len(want)]
    # bf16 keeps 8 bits of mantissa: a relative error of ~0.4% per value, a few hundredths of a dB
    assert np.abs(got - want).max() < (0.1 if amp == "bf16" else 1e-3)
    assert det.precision.name == ("bf16" if amp == "bf16" else "fp32")
    assert det.precision.reason.startswith(f"inference.amp: {amp}")            # what the log line names
    assert det.memory_format == memory_format
    assert net.training is False and all(isinstance(m, nn.BatchNorm3d) for m in net.encoder[1::3])


def test_detector_leaves_a_live_model_in_training_mode_and_untouched(video_net):
    cfg = config_mod.from_dict({"data": {"size": [16, 32], "channels": 1},
                                "model": {"ltgpa": {"width": WIDTH, "g_width": [4, 6, 8]}}})
    net = build_model(cfg)
    net.load_state_dict(video_net.state_dict())
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    frames = np.random.default_rng(0).integers(0, 256, (20, 16, 32), dtype=np.uint8)
    Detector(net, model_meta(cfg), "cpu", 4, "bf16", "auto").score_video(frames)
    assert net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p.requires_grad for p in net.parameters())


def test_detector_clips_are_the_windows_of_the_frames():
    cfg = config_mod.from_dict({"data": {"size": [16, 16], "channels": 1, "clip_len": 8, "scored_index": 4}})
    meta = {**model_meta(cfg), "frame_step": 2}
    det = Detector(nn.Identity(), meta)
    frames = np.random.default_rng(0).integers(0, 256, (40, 16, 16), dtype=np.uint8)
    batch = det.clips(lambda i: frames[i], [3, 4, 5])
    g = det.geometry
    want = torch.stack([to_tensor(frames[g.window(s)], "tanh") for s in (3, 4, 5)])
    assert batch.shape == (3, 1, 8, 16, 16)
    torch.testing.assert_close(batch, want)
    with pytest.raises(ValueError, match="consecutive"):
        det.clips(lambda i: frames[i], [3, 5])
