"""Log rotation limits of an RktTask (``spec.logs``), Nomad's task ``logs`` stanza: how many
files of the pod's stdout and of its stderr are kept, and how large one file may grow.

The files themselves (``<task dir>/alloc/logs/<pod uuid>.stdout.<n>``) and their rotation
are the executor's business (``rkt_operator.executor.logrotate``). Changing these limits
does not restart the pod: the running pod's supervisor picks them up.
"""

from __future__ import annotations

from pydantic import Field

from rkt_operator.model.fields import KubeModel as _Model

DEFAULT_MAX_FILES = 10  # Nomad's logs.max_files
DEFAULT_MAX_FILE_SIZE_MB = 10  # Nomad's logs.max_file_size (MB)
MEBIBYTE = 1024 * 1024


class LogConfig(_Model):
    """Rotation of the pod's output files (Nomad's logs stanza), per stream."""

    max_files: int = Field(
        DEFAULT_MAX_FILES,
        ge=1,
        le=100,
        alias="maxFiles",
        description="Files kept per stream (stdout, stderr), the one being written included; "
        "the oldest is deleted when a rotation would exceed it (Nomad logs.max_files).",
    )
    max_file_size_mb: int = Field(
        DEFAULT_MAX_FILE_SIZE_MB,
        ge=1,
        le=1024,
        alias="maxFileSizeMB",
        description="Size in MiB at which the file being written is rotated (Nomad "
        "logs.max_file_size). Checked about once a second, so a file may hold slightly more.",
    )

    @property
    def max_file_bytes(self) -> int:
        return self.max_file_size_mb * MEBIBYTE
