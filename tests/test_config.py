import pytest

from pseudovad import config as config_mod
from pseudovad.errors import ConfigError
from pseudovad.geometry import ClipGeometry


def test_defaults_are_the_paper_settings():
    cfg = config_mod.from_dict({})
    assert cfg.data.clip_len == 16 and cfg.data.scored_index == 8 and cfg.data.size == [256, 256]
    assert cfg.model.ltgpa.width == [96, 128, 256, 256] and cfg.model.ltgpa.g_width == [96, 128, 256]
    assert (cfg.pseudo.p, cfg.pseudo.lam, cfg.train.lr, cfg.train.batch_size) == (0.5, 0.1, 1e-4, 4)


@pytest.mark.parametrize("override, key", [
    ("pseudo.p=1.5", "pseudo.p"),
    ("pseudo.p=-0.1", "pseudo.p"),
    ("data.clip_len=1", "data.clip_len"),
    ("data.scored_index=16", "data.scored_index"),
    ("model.method=gan", "model.method"),
    ("data.size=[250,250]", "data.size"),
    ("train.epochs=abc", "train.epochs"),
    ("train.amp=maybe", "train.amp"),
    ("data.colour=1", "data.colour"),
    ("nonsense=1", "nonsense"),
    ("data.size=64", "data.size"),
])
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError) as e:
        config_mod.load(None, [override])
    msg = str(e.value)
    assert msg.startswith(key), msg
    assert "\n" not in msg


def test_overrides_parse_yaml_values(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("data:\n  size: [64, 64]\npseudo:\n  p: 0.5\n")
    cfg = config_mod.load(p, ["pseudo.p=0.25", "data.size=[32, 32]", "train.amp=true", "data.labels=null"])
    assert cfg.pseudo.p == 0.25 and cfg.data.size == [32, 32] and cfg.train.amp == "bf16"  # the old boolean form
    assert cfg.data.labels is None


def test_missing_params_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        config_mod.load(tmp_path / "nope.yaml")


def test_invalid_yaml_names_the_file(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="params.yaml: not valid YAML"):
        config_mod.load(p)


def test_mae_geometry_follows_in_frames():
    cfg = config_mod.from_dict({"model": {"method": "mae_nct", "mae": {"patch_size": 8, "in_frames": 3}},
                                "pseudo": {"mask_patch": 16}, "data": {"size": [64, 64]}})
    g = ClipGeometry.from_config(cfg)
    assert (g.clip_len, g.scored_index) == (4, 3)


def test_mae_mask_patch_must_align_with_vit_patches():
    with pytest.raises(ConfigError, match="pseudo.mask_patch"):
        config_mod.from_dict({"model": {"method": "mae_nct", "mae": {"patch_size": 16}},
                              "pseudo": {"mask_patch": 24}, "data": {"size": [48, 48]}})


def test_repository_params_yaml_is_valid():
    from pathlib import Path

    cfg = config_mod.load(Path(__file__).parents[1] / "params.yaml")
    assert cfg.data.name == "synthetic"


def test_with_values_returns_a_new_validated_config_and_leaves_the_old_one():
    cfg = config_mod.from_dict({"pseudo": {"lam": 0.1}})
    new = config_mod.with_values(cfg, {"pseudo.lam": 0.3, "train.init": "models:/m/2"})
    assert (new.pseudo.lam, new.train.init) == (0.3, "models:/m/2")
    assert (cfg.pseudo.lam, cfg.train.init) == (0.1, None)
    with pytest.raises(ConfigError, match="pseudo.p: must be in"):
        config_mod.with_values(cfg, {"pseudo.p": 2.0})
    with pytest.raises(ConfigError, match="pseudo.lamda: unknown key"):
        config_mod.with_values(cfg, {"pseudo.lamda": 0.3})
    with pytest.raises(ConfigError, match="seed.x: seed is not a section"):
        config_mod.set_keys(cfg.to_dict(), {"seed.x": 1})


def test_clip_geometry_round_trips_through_the_model_meta_and_old_files_still_read():
    from pseudovad.models.model_file import model_meta

    cfg = config_mod.from_dict({"data": {"clip_len": 8, "scored_index": 4, "frame_step": 2, "size": [32, 32]},
                                "model": {"ltgpa": {"width": [4, 4, 4, 4], "g_width": [4, 4, 4]}}})
    g = ClipGeometry.from_config(cfg)
    assert (g.span, g.first_scored, list(g.starts(20, stride=3))) == (15, 8, [0, 3])
    assert list(range(20))[g.window(3)] == [3, 5, 7, 9, 11, 13, 15, 17]
    assert ClipGeometry.from_meta(model_meta(cfg)) == g
    # model.pt files from before frame_step was recorded were trained with step 1
    assert ClipGeometry.from_meta({"clip_len": 16, "scored_index": 8}) == ClipGeometry(16, 8, 1)


@pytest.mark.parametrize("override, message", [
    ("device=gpu", "device: must be one of auto, cpu, cuda, got 'gpu'"),                 # a choice
    ("pseudo.mask_ratio=1", "pseudo.mask_ratio: must be in (0, 1), got 1.0"),             # a range
    ("train.epochs=0", "train.epochs: must be ≥ 1, got 0"),
    ("tune.grace_period=20", "tune.grace_period: must be in [1, tune.max_epochs]"),      # two keys
    ("train.holdout_fraction=0.95", "train.holdout_fraction: must be in [0, 1) with train.val_fraction + it < 1"),
    ("model.ltgpa.widht=[4]", "model.ltgpa.widht: unknown key (known: g_width, reconstruct, variant, width)"),
    ("train.epochs='3'", "train.epochs: expected an integer, got '3'"),                  # no "3" → 3
    ("tracking.enabled='yes'", "tracking.enabled: expected true/false, got 'yes'"),
    ("data.size=[64, x]", "data.size[1]: expected an integer, got 'x'"),
    ("storage.dvc_remote=s3://me:secret@host/b", "storage.dvc_remote: must not contain credentials"),
])
def test_refusals_are_one_line_naming_the_key(override, message):
    with pytest.raises(ConfigError) as e:
        config_mod.load(None, [override])
    assert str(e.value).startswith(message) and "\n" not in str(e.value)
    assert "secret" not in str(e.value)


def test_values_params_files_rely_on_are_converted():
    cfg = config_mod.load(None, ["train.epochs=3.0", "data.name=2024", "train.lr=1", "inference.amp=false"])
    assert (cfg.train.epochs, cfg.data.name, cfg.train.lr, cfg.inference.amp) == (3, "2024", 1.0, "off")
    assert isinstance(cfg.train.epochs, int) and isinstance(cfg.train.lr, float)


def test_the_method_check_reads_the_other_sections():
    with pytest.raises(ConfigError, match=r"data.clip_len: 12 must be divisible by 8"):
        config_mod.load(None, ["data.clip_len=12", "data.scored_index=6"])
    cfg = config_mod.load(None, ["model.method=mae_nct", "data.clip_len=12", "data.scored_index=6"])
    assert cfg.model.method == "mae_nct"       # the LTGPA network's strides do not bind MAE-NCT
