"""Local paths and gs:// URLs behind one small set of file operations.

Every path the package takes (--workdir, --weights, --out, config.init_weights) may be a local
path or a gs:// URL. A local path goes to os and shutil as before; a URL goes through
etils.epath, whose gs:// backend is TensorFlow's file system (tf.io.gfile), imported on the
first URL only. TensorFlow's errors come out as OSError naming the path, so callers handle one
error type.

Object storage has no folders and no atomic rename: a "folder" is a name prefix, and moving
one copies every object. Code that needs a step to appear whole asks `is_url` and relies on a
commit marker there instead (googlenet_jax/weights/files.py).
"""
from __future__ import annotations

import builtins
import contextlib
import os
import shutil
from typing import IO, Iterator

from googlenet_jax.errors import first_line

URL_PREFIXES = ("gs://",)


def is_url(path: str | os.PathLike) -> bool:
    return os.fspath(path).startswith(URL_PREFIXES)


def absolute(path: str | os.PathLike) -> str:
    """An absolute local path, or the URL without a trailing slash."""
    path = os.fspath(path)
    if is_url(path):
        return path.rstrip("/") if path.count("/") > 2 else path
    return os.path.abspath(path)


def bucket(url: str) -> str:
    """'gs://b/x/y' -> 'gs://b'."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


@contextlib.contextmanager
def _url_errors(path: str) -> Iterator[None]:
    """TensorFlow's file-system errors as OSError: '<path>: <first line of the reason>'."""
    import tensorflow as tf  # only ever for URLs

    try:
        yield
    except tf.errors.NotFoundError as error:
        raise FileNotFoundError(f"{path}: {first_line(error, 300)}") from None
    except tf.errors.OpError as error:
        raise OSError(f"{path}: {first_line(error, 300)}") from None


def _epath(path: str):
    from etils import epath  # epath pulls in nothing heavy until a URL is used

    return epath.Path(path)


def exists(path: str) -> bool:
    if not is_url(path):
        return os.path.exists(path)
    with _url_errors(path):
        return _epath(path).exists()


def isdir(path: str) -> bool:
    if not is_url(path):
        return os.path.isdir(path)
    with _url_errors(path):
        return _epath(path).is_dir()


def isfile(path: str) -> bool:
    if not is_url(path):
        return os.path.isfile(path)
    with _url_errors(path):
        return _epath(path).is_file()


def listdir(path: str) -> list[str]:
    """The names in a folder."""
    if not is_url(path):
        return os.listdir(path)
    with _url_errors(path):
        return [child.name for child in _epath(path).iterdir()]


def check_bucket(url: str) -> None:
    """FileNotFoundError when a URL's bucket does not exist (or cannot be seen).

    Checked before anything creates folders under a URL: TensorFlow's makedirs does not
    return for a bucket that does not exist."""
    if is_url(url) and not exists(bucket(url)):
        raise FileNotFoundError(f"{bucket(url)}: no such bucket, or no permission to see it")


def makedirs(path: str) -> None:
    """Creates a folder and its parents (nothing to do if it exists)."""
    if not is_url(path):
        os.makedirs(path, exist_ok=True)
        return
    check_bucket(path)
    with _url_errors(path):
        _epath(path).mkdir(parents=True, exist_ok=True)


def rmtree(path: str) -> None:
    """Deletes a folder and everything in it; a missing one and failures are ignored (a
    leftover is removed again at the next start)."""
    if not is_url(path):
        shutil.rmtree(path, ignore_errors=True)
        return
    with contextlib.suppress(OSError), _url_errors(path):
        _epath(path).rmtree(missing_ok=True)


def remove(path: str) -> None:
    """Deletes one file (FileNotFoundError if it is not there)."""
    if not is_url(path):
        os.remove(path)
        return
    with _url_errors(path):
        _epath(path).unlink()


def copytree(source: str, target: str) -> None:
    """Copies a folder of a bucket object by object (object storage cannot rename one)."""
    with _url_errors(source):
        for folder, _, names in _epath(source).walk():
            relative = os.fspath(folder)[len(source.rstrip("/")):].lstrip("/")
            for name in names:
                destination = _epath(os.path.join(target, relative, name))
                (folder / name).copy(destination, overwrite=True)


@contextlib.contextmanager
def open_file(path: str, mode: str = "r") -> Iterator[IO]:
    """open() for a local path or a URL ("r", "w", "rb", "wb"). A URL's object is written
    when the file is closed, so a failed write raises on leaving the block."""
    if not is_url(path):
        with builtins.open(path, mode) as f:
            yield f
        return
    with _url_errors(path), _epath(path).open(mode) as f:
        yield f
