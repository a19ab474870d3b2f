"""Checksummed, cached downloads and safe archive extraction.

Downloading (progress bar, md5/sha256 check, cache folder) is
`keras.utils.get_file`; this module adds what users need around it: a one-line
error that names the flag pointing at a local copy when offline, removal of a
file whose checksum does not match, and an extraction that *refuses* an
archive with a member escaping the target folder (get_file silently skips
such members) and never leaves a half-extracted folder behind.
"""

import hashlib
import os
import tarfile
import zlib

from keras_cnn.errors import UserError
from keras_cnn.fileio import atomic_path
from keras_cnn.zip_bounds import check_sizes

DEFAULT_CACHE_DIR = os.path.join("~", ".keras")


def file_digest(path, algorithm="md5"):
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_problem(file_hash):
    """None if `file_hash` is an md5 (32 hex digits) or a sha256 (64), else the phrase saying what it is not."""
    text = str(file_hash)
    if len(text) in (32, 64) and all(c in "0123456789abcdefABCDEF" for c in text):
        return None
    return (f"{text!r} is not an md5 (32 hex digits) or a sha256 (64 hex digits); it has {len(text)} "
            "characters" + ("" if all(c in "0123456789abcdefABCDEF" for c in text) else ", not all hex digits"))


def _algorithm(file_hash):
    problem = hash_problem(file_hash)
    if problem:
        raise UserError(f"checksum {problem}")
    return "md5" if len(file_hash) == 32 else "sha256"


def verify(path, file_hash):
    """Raises a `UserError` unless `path` has the given md5 (32 hex) or sha256 (64 hex)."""
    if file_hash is None:
        return
    algo = _algorithm(file_hash)
    actual = file_digest(path, algo)
    if actual != file_hash.lower():
        raise UserError(f"{path}: {algo} checksum mismatch (expected {file_hash}, got {actual}); "
                        "the file is corrupt or not the expected one")


def download(url, fname, file_hash, cache_dir=None, local_flag="--data-dir"):
    """Downloads `url` into `<cache_dir>/datasets/<fname>` (cached) and verifies it.

    Returns the local path. A failed download raises a one-line `UserError`
    naming `local_flag`, the flag a user passes to point at a local copy.
    """
    import keras

    cache_dir = os.path.expanduser(cache_dir or DEFAULT_CACHE_DIR)
    # get_file silently falls back to /tmp/.keras when cache_dir does not
    # exist yet (it tests os.access first), so create it here.
    os.makedirs(cache_dir, exist_ok=True)
    target = os.path.join(cache_dir, "datasets", fname)
    try:
        path = keras.utils.get_file(fname, origin=url, file_hash=file_hash,
                                    hash_algorithm=_algorithm(file_hash) if file_hash else "auto",
                                    cache_dir=cache_dir, cache_subdir="datasets")
    except ValueError as e:
        if "hash" in str(e):
            # get_file keeps the bad file; a later run must not trust it.
            if os.path.exists(target):
                os.remove(target)
            raise UserError(f"{url}: downloaded file failed its checksum ({file_hash}); "
                            "the download is corrupt or the server sends another file") from None
        raise UserError(f"{url}: download failed ({e})") from None
    except Exception as e:  # get_file wraps URL errors in a bare Exception
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"cannot download {url} ({reason}); offline? point {local_flag} "
                        "at a local copy") from None
    return path


def _check_member(member, dest):
    name = member.name
    target = os.path.realpath(os.path.join(dest, name))
    if os.path.isabs(name) or not (target == dest or target.startswith(dest + os.sep)):
        return f"member {name!r} would be written outside the target folder"
    if member.issym() or member.islnk():
        link = os.path.realpath(os.path.join(os.path.dirname(target), member.linkname))
        if not link.startswith(dest + os.sep):
            return f"link {name!r} -> {member.linkname!r} points outside the target folder"
    elif not (member.isfile() or member.isdir()):
        return f"member {name!r} is a device or fifo"
    return None


def safe_extract(archive_path, dest_dir):
    """Extracts a tar(.gz/.bz2/.xz) archive into `dest_dir`, all or nothing.

    Every member is checked first; one that escapes the folder (absolute path,
    `..`, a link pointing out, a device file) fails the whole extraction with a
    `UserError` naming the archive and the member. A corrupt or truncated
    archive fails the same way and leaves no `dest_dir` behind.
    """
    if os.path.isdir(dest_dir):
        return dest_dir
    with atomic_path(dest_dir) as tmp:
        os.makedirs(tmp)
        real_tmp = os.path.realpath(tmp)
        try:
            with tarfile.open(archive_path) as tar:
                members = tar.getmembers()
                for m in members:
                    problem = _check_member(m, real_tmp)
                    if problem:
                        raise UserError(f"{archive_path}: unsafe archive, {problem}")
                # What the members declare is what extraction writes: bounded as zip archives are (a
                # "tar bomb" of a few MB would otherwise fill the disk).
                check_sizes(archive_path, len(members), sum(m.size for m in members if m.isfile()),
                            "archive")
                tar.extractall(tmp, members=members, filter="data")
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0].rstrip(":")  # one line
            raise UserError(f"{archive_path}: corrupt or truncated archive ({reason})") from None
    return dest_dir
