"""The names in an ImageFolder tree, listed without decoding a file: class folders, visible files,
and how paths are printed. The `check` stage reads a tree through this module alone."""

import os
import unicodedata
from pathlib import Path


def shown(path: Path) -> str:
    """A path for a message, printable even when its bytes are not UTF-8 (as `\\xe9`)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def same_name(name: str) -> str:
    """What two folder names that differ only in case or Unicode form (NFC/NFD) share."""
    return unicodedata.normalize("NFC", name).casefold()


def visible(path: Path) -> bool:
    # .DS_Store, .ipynb_checkpoints/ and other dot-names are not data.
    return not path.name.startswith(".")


def list_files(folder: Path) -> list[Path]:
    """Files under folder, recursive and sorted, skipping any path part that starts with a dot."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def class_folders(split_dir: Path) -> list[str]:
    """The class names of a `<split>/<class>/<image>` folder: its visible subfolders, sorted."""
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and visible(p))
