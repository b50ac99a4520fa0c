"""lvmcore: artifacts, keys, indexes, metrics and models for latent vector models (LVMs).

The library knows nothing of pytest: `checks/` and `train/` import it.
"""

from lvmcore.errors import ArtifactError

__all__ = ["ArtifactError"]
