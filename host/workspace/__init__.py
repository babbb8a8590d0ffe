"""The local workspace (SQLite in a directory) and Brainwave's Python API over it."""

from .api import DeploymentConfiguration, Model, Webservice, Workspace
from .store import ENV, LocalWorkspace, ModelRecord, ServiceRecord, WorkspaceError, default_workspace

__all__ = ["DeploymentConfiguration", "ENV", "LocalWorkspace", "Model", "ModelRecord", "ServiceRecord", "Webservice",
           "Workspace", "WorkspaceError", "default_workspace"]
