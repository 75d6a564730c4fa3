"""Import torch once, or fail with a message that says what to install.

``rfdiff`` itself never imports torch; only ``from rfdiff import torch`` does.
Inside this subpackage ``import torch`` is the absolute import of PyTorch (the
subpackage's own name ``rfdiff.torch`` never shadows it: Python 3 imports are
absolute), which ``tests/torch/test_torch_lazy.py`` checks.
"""
from __future__ import annotations

import importlib

INSTALL_HINT = "pip install 'rfdiff[torch]'  (torch==2.13.0)"


def require_torch():
    """Return the ``torch`` module or raise ``ImportError`` with the install hint."""
    try:
        return importlib.import_module("torch")
    except ImportError as exc:  # ModuleNotFoundError, or a broken install
        raise ImportError(f"rfdiff.torch needs PyTorch, which could not be imported ({exc}). "
                          f"Install it with: {INSTALL_HINT}") from exc
