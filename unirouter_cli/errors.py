"""User-facing errors: the CLI prints ``str(err)`` on one line and exits with code 2."""


class UnirouterError(Exception):
    """A known error caused by user input, data or environment (not a bug)."""


class DataError(UnirouterError):
    """A dataset folder or file is malformed."""


class ConfigError(UnirouterError):
    """A command-line option or config file is invalid."""


class RunDirError(UnirouterError):
    """A run directory is missing files, locked, or inconsistent."""


class DownloadError(UnirouterError):
    """A download or conversion of upstream files failed."""
