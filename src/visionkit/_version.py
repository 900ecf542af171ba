"""The installed version of visionkit."""

__version__ = "0.1.0"
"""The version of visionkit, following semantic versioning."""
