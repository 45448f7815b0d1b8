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


_BIDI = set(range(0x202A, 0x202F)) | set(range(0x2066, 0x206A)) | {0x200E, 0x200F, 0x061C}


def printable(text: str, keep: str = "\n\t") -> str:
    """``text`` with control characters (terminal escapes, bell, carriage return, bidirectional overrides)
    shown as ``\\xNN`` / ``\\uNNNN``: a name read from a file cannot rewrite the terminal."""
    if text.isprintable():
        return text
    out = []
    for c in text:
        o = ord(c)
        if c in keep or (c.isprintable() and o not in _BIDI):
            out.append(c)
        else:
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}")
    return "".join(out)


def install_hint(extra: str) -> str:
    """How to add an optional extra to a unirouter clone's environment (the package is installed from its clone)."""
    make = "make install-embed" if extra == "embed" else "make install (its dev tools include it)"
    return f"in the unirouter clone, `{make}`, or `pip install -c constraints.txt -e '.[{extra}]'`"
