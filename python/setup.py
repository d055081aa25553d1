# pip install ./python (after `make python`, which puts libdiaspora_shm.so
# into the package). setup.py alone, without a pyproject.toml, so that pip
# builds with the setuptools and wheel already installed and needs no index.
import os

from setuptools import setup
from setuptools.dist import Distribution


class BinaryDistribution(Distribution):
    """The package holds a compiled library: its wheel is for this platform."""

    def has_ext_modules(self):
        return True


here = os.path.dirname(os.path.abspath(__file__))
if not os.path.exists(os.path.join(here, "diaspora_shm", "libdiaspora_shm.so")):
    raise SystemExit("diaspora_shm/libdiaspora_shm.so is missing: run `make python` in the repository first")

setup(
    name="diaspora_shm",
    version="0.3.0",
    description="Diaspora Streaming API over shared-memory rings (drop-in for diaspora_stream.api)",
    packages=["diaspora_shm"],
    package_data={"diaspora_shm": ["libdiaspora_shm.so"]},
    python_requires=">=3.8",
    zip_safe=False,
    distclass=BinaryDistribution,
)
