"""Tests for molmoact2.examples (demo outputs for the Output inspector)."""

import pytest

from molmoact2 import examples as E
from molmoact2 import spatial as S
from molmoact2 import tokens as T


def test_combined_examples_module():
    exs = E.output_examples()
    kinds = {e.kind for e in exs}
    assert kinds == {"generated", "spatial"}
    assert any(e.malformed for e in exs if e.kind == "generated") and any(e.malformed for e in exs if e.kind == "spatial")
    for e in exs:
        assert E.detect_kind(e.text) == e.kind, e.name


def test_every_example_goes_through_its_parser():
    for e in E.output_examples():
        if e.kind == "generated":
            if e.malformed:
                with pytest.raises(T.TokenFormatError):
                    T.parse_generated(e.text)
            else:
                assert T.parse_generated(e.text).style.startswith("robot_")
        else:
            assert bool(S.parse_answer(e.text).problems) == e.malformed, e.name


def test_detect_kind_rejects_non_text():
    with pytest.raises(TypeError):
        E.detect_kind(None)
