"""Backends that execute a compiled or imported model, behind one interface."""

from .backend import (Backend, BackendError, LoadedModel, TensorSpec, available_backends, backend_for, default_backend,
                      get_backend, register_backend)

__all__ = ["Backend", "BackendError", "LoadedModel", "TensorSpec", "available_backends", "backend_for", "default_backend",
           "get_backend", "register_backend"]
