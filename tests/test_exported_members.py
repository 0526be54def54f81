import importlib

import pytest

import ctxgate


@pytest.mark.parametrize("module", ["ctxgate", "ctxgate.engine", "ctxgate.store", "ctxgate.server"])
def test_public_surface_is_declared_and_importable(module: str) -> None:
    mod = importlib.import_module(module)
    assert mod.__all__
    for name in mod.__all__:
        assert hasattr(mod, name), name


def test_top_level_surface() -> None:
    assert {"compress", "CompressResult", "__version__"} <= set(ctxgate.__all__)
