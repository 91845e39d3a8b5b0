"""The opt-in metrics beside the paper protocol: region score, pixel AUC, bootstrap intervals."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from pseudovad.errors import DataError
from pseudovad.evaluation.bootstrap import binned_auc, interval, mean_of, pooled_auc
from pseudovad.evaluation.pixels import pixel_auc, read_pixel_masks, resize_masks
from pseudovad.evaluation.regions import region_psnr, window_shape


# ----------------------------------------------------------------------------------------- region

def test_region_score_is_the_psnr_of_the_worst_window():
    e = np.full((16, 24), 1e-4, dtype=np.float32)     # 40 dB everywhere ...
    e[4:8, 6:12] = 1e-2                                # ... but one 4×6 window at 20 dB
    # grid 4×6 → 4×4 windows at stride 2×2; the worst window lies inside the bright block
    assert window_shape((16, 24), (4, 6)) == ((4, 4), (2, 2))
    assert region_psnr(e, (4, 6)) == pytest.approx(20.0, abs=1e-4)
    # the frame PSNR dilutes it: 24 of 384 pixels are bad
    frame = 10 * math.log10(1 / e.mean())
    assert frame > 31


def test_region_score_sees_an_object_on_a_cell_border():
    e = np.zeros((16, 16), dtype=np.float32) + 1e-6
    e[6:10, 6:10] = 1e-2                               # a 4×4 object across the 2×2 grid's centre
    r = region_psnr(e, (2, 2))                        # 8×8 windows, stride 4: the centre window holds it all
    assert r == pytest.approx(10 * math.log10(1 / ((16 * 1e-2 + 48 * 1e-6) / 64)), abs=1e-3)


def test_region_score_batches_and_refuses_a_bad_grid():
    e = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    assert np.allclose(region_psnr(e, (2, 2)), [region_psnr(x, (2, 2)) for x in e])
    assert region_psnr(e, (1, 1)) == pytest.approx(10 * np.log10(1 / e.mean(axis=(1, 2))), rel=1e-5)
    with pytest.raises(ValueError, match="region grid"):
        region_psnr(e, (9, 2))


# ----------------------------------------------------------------------------------------- pixel

def _masks_npz(tmp_path, masks, lengths, packed=True):
    path = tmp_path / "masks.npz"
    if packed:
        np.savez(path, packed=np.packbits(masks, axis=-1), shape=np.array(masks.shape), video_lengths=np.array(lengths))
    else:
        np.savez(path, masks=masks, video_lengths=np.array(lengths))
    return path


def test_pixel_masks_round_trip_the_shared_format(tmp_path):
    rng = np.random.default_rng(0)
    masks = rng.random((5, 6, 11)) > 0.7                # W = 11: packbits pads to 2 bytes
    for packed in (True, False):
        got = read_pixel_masks(_masks_npz(tmp_path, masks, [2, 3], packed), [("01", 2), ("02", 3)])
        assert list(got) == ["01", "02"]
        assert np.array_equal(got["01"], masks[:2]) and np.array_equal(got["02"], masks[2:])


def test_pixel_masks_bad_files_are_one_clear_error(tmp_path):
    masks = np.zeros((5, 6, 8), dtype=bool)
    with pytest.raises(DataError, match=r"data.pixel_masks: .*missing.npz: file not found"):
        read_pixel_masks(tmp_path / "missing.npz", [("01", 5)])
    junk = tmp_path / "junk.npz"
    junk.write_text("not a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        read_pixel_masks(junk, [("01", 5)])
    with pytest.raises(DataError, match=r"video_lengths \[2, 3\] do not match the test videos' frame counts \[3, 2\]"):
        read_pixel_masks(_masks_npz(tmp_path, masks, [2, 3]), [("01", 3), ("02", 2)])
    with pytest.raises(DataError, match="5 mask frames but the 1 test videos have 4 frames"):
        read_pixel_masks(_nolengths(tmp_path, masks), [("01", 4)])
    other = tmp_path / "other.npz"
    np.savez(other, something=np.zeros(3))
    with pytest.raises(DataError, match="needs 'packed' \\+ 'shape'"):
        read_pixel_masks(other, [("01", 3)])


def _nolengths(tmp_path, masks):
    path = tmp_path / "nolengths.npz"
    np.savez(path, masks=masks)
    return path


def test_resize_masks_marks_pixels_at_least_half_covered():
    m = np.zeros((1, 4, 4), dtype=bool)
    m[0, :2, :2] = True                                 # the top-left quarter
    m[0, 2, 2] = True                                   # one of four pixels of the bottom-right cell
    small = resize_masks(m, (2, 2))
    assert small.tolist() == [[[True, False], [False, False]]]


def test_pixel_auc_on_a_synthetic_mask():
    rng = np.random.default_rng(0)
    masks = {"a": np.zeros((3, 8, 8), dtype=bool)}
    masks["a"][1, 2:5, 2:5] = True
    perfect = {"a": {f: masks["a"][f].astype(np.float32) + 0.01 * rng.random((8, 8)) for f in range(3)}}
    assert pixel_auc(masks, perfect) == 1.0
    noise = {"a": {f: rng.random((8, 8)).astype(np.float32) for f in range(3)}}
    y = masks["a"].ravel()
    s = np.concatenate([noise["a"][f].ravel() for f in range(3)])
    assert pixel_auc(masks, noise) == pytest.approx(roc_auc_score(y, s))
    # a frame without an error map (an edge frame) is left out
    partial = {"a": {1: perfect["a"][1]}}
    assert pixel_auc(masks, partial) == 1.0
    with pytest.raises(DataError, match="needs normal and anomalous pixels"):
        pixel_auc(masks, {"a": {0: noise["a"][0]}})


# ----------------------------------------------------------------------------------------- bootstrap

def _videos(n, rng):
    labels, scores = {}, {}
    for i in range(n):
        y = np.zeros(60, dtype=int)
        y[rng.integers(10, 30):rng.integers(40, 60)] = 1
        labels[f"{i:02d}"] = y
        scores[f"{i:02d}"] = y * 0.6 + rng.random(60)      # informative but noisy
    return labels, scores


def _pooled(labels, scores):
    return roc_auc_score(np.concatenate(list(labels.values())), np.concatenate(list(scores.values())))


def _ci(labels, scores, n=400):
    return interval(pooled_auc(list(labels.values()), list(scores.values())), len(labels), n)


def test_bootstrap_interval_contains_the_point_estimate_and_shrinks_with_more_videos():
    rng = np.random.default_rng(0)
    small, big = _videos(6, rng), _videos(48, rng)
    lo_s, hi_s = _ci(*small)
    lo_b, hi_b = _ci(*big)
    assert lo_s <= _pooled(*small) <= hi_s
    assert lo_b <= _pooled(*big) <= hi_b
    assert hi_b - lo_b < 0.6 * (hi_s - lo_s)
    assert _ci(*small) == (lo_s, hi_s)            # a fixed seed: the same interval every time


def test_bootstrap_redraws_single_class_resamples_and_refuses_one_class_data():
    labels = [np.zeros(10, dtype=int), np.ones(10, dtype=int)]     # each video single-class
    scores = [np.zeros(10), np.ones(10)]
    assert interval(pooled_auc(labels, scores), 2, n=50) == (1.0, 1.0)
    with pytest.raises(DataError, match="only one class"):
        pooled_auc([np.ones(5, dtype=int)], [np.ones(5)])


def test_macro_interval_averages_the_drawn_videos_and_skips_single_class_ones():
    stat = mean_of([0.5, None, 1.0])
    assert stat(np.array([0, 0, 2])) == pytest.approx(2 / 3)
    assert stat(np.array([1, 1, 1])) is None
    lo, hi = interval(stat, 3, n=200)
    assert 0.5 <= lo <= hi <= 1.0


def test_binned_auc_matches_the_exact_auc_of_the_pooled_items():
    rng = np.random.default_rng(1)
    ys = [rng.random(5000) < 0.1 for _ in range(4)]
    ss = [y * 0.3 + rng.random(5000) for y in ys]
    edges = np.unique(np.quantile(np.concatenate(ss), np.linspace(0, 1, 2049)))
    pos = [np.histogram(s[y], edges)[0] for y, s in zip(ys, ss)]
    neg = [np.histogram(s[~y], edges)[0] for y, s in zip(ys, ss)]
    pick = np.array([0, 2, 2, 3])
    exact = roc_auc_score(np.concatenate([ys[i] for i in pick]), np.concatenate([ss[i] for i in pick]))
    assert binned_auc(pos, neg, edges)(pick) == pytest.approx(exact, abs=2e-3)
