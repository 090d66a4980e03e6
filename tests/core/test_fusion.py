"""Fusion groups from data flow on real models, validation messages, equivalence check."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from engine_checks import QUICK, assert_clean, drive, stages, zoo

from qstudio.core import fusion
from qstudio.core.errors import FusionError
from qstudio.core.loading import load_model
from qstudio.core.pipeline import run_recipe
from qstudio.core.recipe import DataSource, Recipe


def test_resnet18_groups_follow_data_flow(resnet18):
    s = fusion.suggest_groups(resnet18)
    assert s.method == "data flow"
    assert s.groups[0] == ["conv1", "bn1", "relu"]
    # BasicBlock calls self.relu twice: fusing it into conv1/bn1 would remove the ReLU after the add
    assert ["layer1.0.conv1", "layer1.0.bn1"] in s.groups
    assert not any("layer1.0.relu" in g for g in s.groups)
    assert ["layer2.0.downsample.0", "layer2.0.downsample.1"] in s.groups
    assert len(s.groups) == 20
    assert fusion.validate_groups(resnet18, s.groups) == []


def test_fusing_a_shared_relu_is_rejected_and_would_change_outputs(resnet18):
    bad = [["layer1.0.conv1", "layer1.0.bn1", "layer1.0.relu"]]
    problems = fusion.validate_groups(resnet18, bad)
    assert problems and "called 2 times" in problems[0].reason
    fused = fusion.fused_copy(resnet18, bad)
    check = fusion.check_equivalence(resnet18, fused, torch.randn(1, 3, 224, 224))
    assert not check.ok and "CHANGED" in check.describe()


def test_valid_fusion_is_equivalent(resnet18):
    groups = fusion.suggest_groups(resnet18).groups
    check = fusion.check_equivalence(resnet18, fusion.fused_copy(resnet18, groups), torch.randn(2, 3, 224, 224))
    assert check.ok and check.max_abs_diff < 1e-4


def test_mobilenet_v2_groups():
    m = torchvision.models.mobilenet_v2(weights=None).eval()
    s = fusion.suggest_groups(m)
    # ReLU6 is not fusable: conv+bn pairs only
    assert s.groups and all(len(g) == 2 for g in s.groups)
    assert ["features.0.0", "features.0.1"] in s.groups


@pytest.mark.parametrize(
    ("groups", "module", "reason"),
    [
        ([["conv1", "nope"]], "nope", "is not a module"),
        ([["avgpool", "fc"]], "avgpool", "cannot fuse"),
        ([["conv1", "bn1"], ["bn1", "relu"]], "bn1", "already in group"),
        ([["layer1.0.conv1", "layer1.0.bn2"]], "layer1.0.conv1", "does not feed"),
    ],
)
def test_invalid_groups_name_module_and_reason(resnet18, groups, module, reason):
    problems = fusion.validate_groups(resnet18, groups)
    assert any(p.module == module and reason in p.reason for p in problems), problems
    with pytest.raises(FusionError, match=module.replace(".", r"\.")):
        fusion.check_groups(resnet18, groups)


def test_untraceable_model_falls_back_to_module_order():
    loaded = load_model(zoo("gated_cnn"))
    s = fusion.suggest_groups(loaded.module)
    assert s.method == "module order"
    assert s.groups == [["stem.0", "stem.1", "stem.2"]]
    assert "gate" in s.notes[0]
    # treating the untraceable module as a leaf restores data flow
    assert fusion.suggest_groups(loaded.module, {"gate"}).method == "data flow"


def test_demo_groups(demo):
    s = fusion.suggest_groups(demo.module)
    assert ["stem.0", "stem.1", "stem.2"] in s.groups
    assert ["layers.0.conv1", "layers.0.bn1", "layers.0.relu1"] in s.groups
    # relu2 follows the residual add, not bn2
    assert ["layers.0.conv2", "layers.0.bn2"] in s.groups


def test_invalid_fusion_group_in_a_recipe_is_refused_before_calibrating(tmp_path: Path) -> None:
    loaded = load_model(zoo("plain_cnn"))
    for groups, named in (([["conv1", "fc1"]], "fc1"), ([["conv1", "nope"]], "nope"), ([["relu1", "conv2"]], "relu1")):
        recipe = Recipe(mode="fx", fusion=groups, calib=DataSource(kind="random", limit=8), benchmark=QUICK)
        with pytest.raises(FusionError) as info:
            drive(run_recipe(recipe, loaded))
        assert_clean(info.value, named)
        assert "calibrate" not in stages(info.value.seen)
