"""diaspora_shm: event streaming between the processes of one node through
rings in shared memory, from Python (ctypes over libdiaspora_shm).

The module ``diaspora_shm.api`` is a drop-in for ``diaspora_stream.api``.
"""

from . import _lib

__version__ = _lib.lib.dshm_version().decode()
