"""A command whose optional dependencies are missing says which extra to install."""

from __future__ import annotations

import pytest

from stream_app import extras
from stream_app.errors import StreamAppError


def test_a_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(extras.EXTRAS, "train", ("sklearn", "no_such_module_for_this_test"))
    with pytest.raises(extras.MissingExtraError) as caught:
        extras.require_extra("train", "train")
    message = str(caught.value)
    assert "`stream-app train` needs the 'train' extra (no_such_module_for_this_test not installed)" in message
    assert "pip install 'casting-defect-stream[train]'" in message
    assert isinstance(caught.value, StreamAppError)


@pytest.mark.parametrize("extra", list(extras.EXTRAS))
def test_every_extra_is_installed_by_the_dev_install(extra):
    extras.require_extra(extra, "test")  # `make install` installs .[dev], which includes every extra
