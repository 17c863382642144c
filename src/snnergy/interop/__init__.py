"""Bring models in and take spiking networks out: user model files and NIR.

- :func:`load_model_file` builds a user's own PyTorch model from ``path.py:factory`` and loads its
  safetensors weights (nothing is unpickled).
- :func:`export_nir` / :func:`import_nir` write and read a converted network as NIR, the
  Neuromorphic Intermediate Representation (optional package ``nir``: ``pip install 'snnergy[nir]'``).
"""

from snnergy.interop.model_file import load_model_file, load_weights, parse_model_spec
from snnergy.interop.nir_export import RESET_KEY, V0_KEY, export_nir
from snnergy.interop.nir_import import import_nir

__all__ = ["RESET_KEY", "V0_KEY", "export_nir", "import_nir", "load_model_file", "load_weights", "parse_model_spec"]
