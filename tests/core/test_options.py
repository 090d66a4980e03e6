"""The command line's options: one list syntax for shapes, batch sizes, numbers and layer names."""

from __future__ import annotations

import pytest

from qstudio.options import (
    UsageError,
    parse_float_list,
    parse_int_list,
    parse_name_list,
    parse_window_args,
    split_list,
)

# every way of writing a list that the CLI or the window accepted before they shared one parser
SHAPES = {
    "1,3,224,224": [1, 3, 224, 224],  # the CLI's and the window's
    "1x3x224x224": [1, 3, 224, 224],  # the CLI's and the window's
    "1, 3, 224, 224": [1, 3, 224, 224],  # the window's
    "[1, 3, 224, 224]": [1, 3, 224, 224],  # the window's (as a recipe writes it)
    "(1, 3, 224, 224)": [1, 3, 224, 224],  # the window's
    "1×3×224×224": [1, 3, 224, 224],  # the window's
    "1,,3": [1, 3],  # the CLI's: empty items ignored
    "1 3 224 224": [1, 3, 224, 224],  # new: spaces separate too
}


@pytest.mark.parametrize("text", list(SHAPES))
def test_every_list_syntax_gives_the_same_shape_on_the_command_line(text: str) -> None:
    assert parse_int_list(text, positive=True) == SHAPES[text]
    assert parse_window_args(["--input-shape", text]).input_shape == SHAPES[text]


def test_numbers_and_names_use_the_same_separators() -> None:
    assert parse_float_list("0.485,0.456,0.406") == parse_float_list("[0.485; 0.456 0.406]") == [0.485, 0.456, 0.406]
    assert parse_float_list("1e-3") == [1e-3]
    assert parse_int_list("1, 8") == parse_window_args(["--batch-sizes", "1,8"]).batch_sizes == [1, 8]
    assert parse_name_list("conv1,bn1,relu") == parse_name_list("conv1, bn1, relu") == ["conv1", "bn1", "relu"]
    assert split_list("") == split_list(" [] ") == []
    assert split_list("layer1.0.conv1,layer1.0.bn1") == ["layer1.0.conv1", "layer1.0.bn1"]  # dots are no separator


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--input-shape", "1,a"], "not a shape"),
        (["--input-shape", "1,x"], "not a shape"),  # an "x" is a separator only between two numbers
        (["--input-shape", "1,0,3"], "positive sizes"),
        (["--batch-sizes", "1,eight"], "not a list of integers"),
        (["--batch-sizes", ","], "not a list of integers"),
        (["--mean", "0.5,half"], "not a list of numbers"),
        (["--mean", "0x1"], "not a list of numbers"),  # numbers are not dimensions
    ],
)
def test_a_bad_list_names_the_value_and_the_syntax(argv: list[str], named: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_window_args(argv)
    assert named in str(info.value) and repr(argv[1]) in str(info.value)
