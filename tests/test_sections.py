"""from_sections: a config dataclass from config sections, by field name, numbers cast."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from coaddbliss.sections import from_sections


@dataclass(frozen=True)
class Example:
    size: int  # no default: required
    scale: float = 1.0
    name: str = "a"
    band: tuple[float, float] = (0.25, 0.75)
    levels: tuple[float, ...] = (0.5,)


def test_fields_come_from_the_first_section_that_has_them_and_are_cast():
    built = from_sections(
        Example,
        {"size": 4.0, "band": [0, 1], "unused": "x"},
        {"size": 99, "scale": 2, "levels": [1, 2, 3]},
    )
    assert built == Example(size=4, scale=2.0, band=(0.0, 1.0), levels=(1.0, 2.0, 3.0))
    assert type(built.size) is int and type(built.scale) is float
    assert all(type(v) is float for v in built.band + built.levels)


def test_missing_keys_take_defaults_or_fail_naming_the_field():
    assert from_sections(Example, {"size": 3}) == Example(size=3)
    with pytest.raises(KeyError, match="size"):
        from_sections(Example, {"scale": 2.0})


def test_other_types_pass_unchanged():
    assert from_sections(Example, {"size": 1, "name": "b"}).name == "b"
