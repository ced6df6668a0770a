"""Saved cache states on disk, so that a restart loads the model's KV cache instead of decoding every file again."""

from .state_file import SavedState, StateFileError
from .state_store import PersistenceUnavailable, StateStore, default_state_dir

__all__ = ["PersistenceUnavailable", "SavedState", "StateFileError", "StateStore", "default_state_dir"]
