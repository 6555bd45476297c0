"""A local, Personalize-compatible engine: control plane, runtime and events over the real wire
protocols (see server.py), real models trained on the imported data (see training.py)."""

from local.personalize.server import PersonalizeServer

__all__ = ["PersonalizeServer"]
