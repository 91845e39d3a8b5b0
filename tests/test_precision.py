"""How steps run: train.amp auto|bf16|off, memory format, threads. Results must not depend on them
beyond rounding, and the device capability checks must resolve as docs/guides/training.md documents."""
from __future__ import annotations

import pytest
import torch

from pseudovad import config as config_mod
from pseudovad import device as device_mod
from pseudovad.errors import ConfigError
from pseudovad.training.loop import loader_workers, prepare
from pseudovad.training.ltgpa import LTGPAMethod
from pseudovad.training.mae_nct import MAENCTMethod

CPU = torch.device("cpu")
CUDA = torch.device("cuda")   # a torch.device object needs no GPU; only the capability calls are mocked


def _no_cpuinfo(monkeypatch, flags=None):
    monkeypatch.setattr(device_mod, "cpu_flags", lambda cpuinfo="/proc/cpuinfo": flags)


def test_cpuinfo_flags_are_read_from_the_file(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx512f avx512_bf16 amx_tile amx_bf16\n\n"
                 "processor\t: 1\nflags\t\t: fpu\n")
    assert device_mod.cpu_flags(f) == {"fpu", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}
    assert device_mod.cpu_flags(tmp_path / "missing") is None


@pytest.mark.parametrize("flags, want", [
    ({"avx2", "avx512f"}, None),                       # AVX-512 without bf16: fp32
    ({"avx512f", "avx512_bf16"}, torch.bfloat16),      # Cooper Lake / Zen 4
    ({"amx_tile", "amx_bf16", "avx512_bf16"}, torch.bfloat16),   # Sapphire Rapids
    (set(), None),
])
def test_amp_auto_on_cpu_follows_the_cpu_flags(monkeypatch, flags, want):
    _no_cpuinfo(monkeypatch, flags)
    p = device_mod.resolve_amp("auto", CPU)
    assert p.dtype is want
    assert p.name == ("bf16" if want else "fp32")
    assert p.reason.startswith("auto: CPU reports") and "/proc/cpuinfo" in p.reason


def test_amp_auto_without_cpuinfo_asks_torch(monkeypatch):
    _no_cpuinfo(monkeypatch, None)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert device_mod.resolve_amp("auto", CPU).dtype is None
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    p = device_mod.resolve_amp("auto", CPU)
    assert p.dtype is torch.bfloat16 and "torch.cpu CPUID probes" in p.reason


@pytest.mark.parametrize("supported", [True, False])
def test_amp_auto_on_cuda_follows_is_bf16_supported(monkeypatch, supported):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: supported)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Tesla T4" if not supported else "A100")
    p = device_mod.resolve_amp("auto", CUDA)
    assert p.dtype is (torch.bfloat16 if supported else None)
    assert ("does not support" in p.reason) is (not supported)


def test_amp_off_and_bf16_are_obeyed_whatever_the_device(monkeypatch):
    _no_cpuinfo(monkeypatch, set())
    assert device_mod.resolve_amp("off", CPU).dtype is None
    forced = device_mod.resolve_amp("bf16", CPU)
    assert forced.dtype is torch.bfloat16 and "slow here" in forced.reason
    _no_cpuinfo(monkeypatch, {"amx_bf16"})
    assert device_mod.resolve_amp("off", CPU).dtype is None


@pytest.mark.parametrize("yaml_value, want", [("false", "off"), ("off", "off"), ("no", "off"), ("true", "bf16"),
                                              ("on", "bf16"), ("auto", "auto"), ("bf16", "bf16")])
@pytest.mark.parametrize("section", ["train", "inference"])
def test_old_boolean_amp_values_still_validate(tmp_path, yaml_value, want, section):
    # YAML 1.1 reads an unquoted off/on/no as a boolean: `-p inference.amp=off` must still mean off
    p = tmp_path / "params.yaml"
    p.write_text(f"{section}:\n  amp: {yaml_value}\n")
    assert getattr(config_mod.load(p), section).amp == want
    assert getattr(config_mod.load(None, [f"{section}.amp={yaml_value}"]), section).amp == want


@pytest.mark.parametrize("override, key", [("train.amp=fp16", "train.amp"), ("train.amp=1", "train.amp"),
                                           ("train.memory_format=nhwc", "train.memory_format"),
                                           ("data.num_workers=-1", "data.num_workers")])
def test_bad_speed_keys_are_one_line_errors(override, key):
    with pytest.raises(ConfigError) as e:
        config_mod.load(None, [override])
    assert str(e.value).startswith(f"{key}: ") and "\n" not in str(e.value)


def test_loader_workers_default_per_device():
    cfg = config_mod.from_dict({})
    assert cfg.data.num_workers is None
    assert loader_workers(cfg, CPU) == 0
    assert loader_workers(cfg, CUDA) == max(0, min(4, torch.get_num_threads() - 1))
    cfg.data.num_workers = 3
    assert loader_workers(cfg, CPU) == 3


def test_memory_format_auto_follows_the_measured_table():
    for (kind, dev), fmt in device_mod.FASTEST_FORMAT.items():
        assert device_mod.resolve_memory_format("auto", kind, torch.device(dev)) == fmt
    assert device_mod.resolve_memory_format("contiguous", "video", CPU) == "contiguous"
    assert device_mod.torch_format("channels_last", 5) is torch.channels_last_3d
    assert device_mod.torch_format("channels_last", 4) is torch.channels_last
    assert device_mod.torch_format("contiguous", 5) is torch.contiguous_format


def test_set_threads_sets_torch_and_child_processes(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    try:
        device_mod.set_threads(1)
        assert torch.get_num_threads() == 1
        import os
        assert os.environ["OMP_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="--threads: must be ≥ 1"):
        device_mod.set_threads(0)


def test_cli_threads_option_is_applied_before_the_stage(monkeypatch, tmp_path, capsys):
    from pseudovad import cli

    monkeypatch.chdir(tmp_path)
    seen = []
    monkeypatch.setattr(device_mod, "set_threads", lambda n: seen.append(n))
    rc = cli.main(["evaluate", "--threads", "3", "-P", "none.yaml"])
    assert seen == [] and rc == 2    # the params file is missing: refused before torch is touched
    (tmp_path / "params.yaml").write_text("seed: 0\ntracking:\n  enabled: false\n")
    rc = cli.main(["evaluate", "--threads", "3", "--model", "missing.pt", "--out", "ev"])
    assert seen == [3] and rc == 2   # valid params: threads are set before the stage runs (then: no model)
    monkeypatch.undo()
    assert cli.main(["evaluate", "--threads", "0"]) == 2
    assert "--threads: must be ≥ 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("stage", ["synthesize", "extract", "ingest", "register", "report"])
def test_stages_that_run_no_model_take_no_device_or_threads(stage, capsys):
    from pseudovad import cli

    for option in (["--threads", "3"], ["--device", "cpu"]):
        with pytest.raises(SystemExit) as e:
            cli.main([stage, *option])
        assert e.value.code == 2 and f"unrecognized arguments: {option[0]}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main([stage, "--help"])
    shown = capsys.readouterr().out
    assert "--params" in shown and "--device" not in shown and "--threads" not in shown


def test_version_names_the_package_version_and_commit(capsys):
    from pseudovad import build, cli

    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and out.startswith(f"pseudovad {build.version()}")
    commit = build.source_commit()
    assert commit is None or f"(commit {commit})" in out


# ----------------------------------------------------------------------------------------------
# Numerics: bf16 and channels-last against fp32 / contiguous, one step on tiny data

LT = {"model": {"ltgpa": {"width": [8, 12, 16, 16], "g_width": [8, 12, 16]}}, "data": {"size": [32, 32], "clip_len": 8,
                                                                                         "scored_index": 4}}


def _ltgpa(amp="off", fmt="contiguous", variant="video", kind="learned"):
    tree = config_mod.deep_merge(LT, {"pseudo": {"kind": kind, "p": 1.0}, "device": "cpu",
                                      "train": {"lr": 1e-3, "amp": amp, "memory_format": fmt}})
    if variant == "image":
        tree = config_mod.deep_merge(tree, {"model": {"ltgpa": {"variant": "image"}}, "data": {"channels": 3}})
    cfg = config_mod.from_dict(tree)
    torch.manual_seed(0)
    m = LTGPAMethod(cfg, CPU)
    return m, prepare(cfg, m)


def _clip(variant="video"):
    g = torch.Generator().manual_seed(1)
    if variant == "image":
        return torch.rand(4, 3, 32, 32, generator=g)
    return torch.rand(2, 1, 8, 32, 32, generator=g) * 2 - 1


def _steps(m, rt, x, n=2):
    gen = torch.Generator().manual_seed(3)
    x = x.contiguous(memory_format=rt.input_format)
    out = []
    for _ in range(n):
        with rt.precision.autocast(CPU):
            out.append(m.train_step(x, gen))
    return out


def test_bf16_ltgpa_steps_are_finite_and_close_to_fp32():
    ref = _steps(*_ltgpa("off"), _clip())
    m, rt = _ltgpa("bf16")
    got = _steps(m, rt, _clip())
    assert rt.precision.dtype is torch.bfloat16
    for a, b in zip(ref, got):
        assert set(a) == set(b)
        for k in a:
            assert b[k] == b[k] and abs(b[k]) != float("inf"), k
            assert b[k] == pytest.approx(a[k], rel=0.05, abs=1e-3), k
    # the masters stay fp32 under autocast: weights, BN statistics, Adam moments
    for mod in m.modules().values():
        assert all(t.dtype == torch.float32 for t in mod.state_dict().values() if t.is_floating_point())
    for opt in m.optimizers().values():
        assert all(v.dtype == torch.float32 for s in opt.state.values() for v in s.values()
                   if torch.is_tensor(v) and v.is_floating_point() and v.ndim > 0)


@pytest.mark.parametrize("variant", ["video", "image"])
def test_channels_last_gives_the_contiguous_losses(variant):
    kind = "learned"
    ref = _steps(*_ltgpa("off", "contiguous", variant, kind), _clip(variant))
    m, rt = _ltgpa("off", "channels_last", variant, kind)
    want = torch.channels_last_3d if variant == "video" else torch.channels_last
    assert rt.input_format is want and m.F.encoder[3].weight.is_contiguous(memory_format=want)  # 8→12 channels
    got = _steps(m, rt, _clip(variant))
    for a, b in zip(ref, got):
        for k in a:
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-6), k


def test_bf16_mae_step_is_finite_and_close_to_fp32():
    def run(amp):
        cfg = config_mod.from_dict({
            "model": {"method": "mae_nct", "mae": {"patch_size": 8, "embed_dim": 32, "depth": 2, "heads": 2}},
            "data": {"size": [32, 32]}, "pseudo": {"mask_patch": 16}, "device": "cpu",
            "train": {"amp": amp, "lr": 1e-3, "epochs": 1}})
        torch.manual_seed(0)
        m = MAENCTMethod(cfg, CPU)
        rt = prepare(cfg, m)
        x = torch.rand(2, 1, 5, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
        return _steps(m, rt, x)
    for a, b in zip(run("off"), run("bf16")):
        for k in a:
            assert b[k] == pytest.approx(a[k], rel=0.05, abs=2e-3), k
