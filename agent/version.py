"""The installed evgw version."""

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("evgw")
except PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "0+unknown"
