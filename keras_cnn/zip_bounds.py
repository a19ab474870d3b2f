"""How much an archive may unpack to, checked before any member is read.

A `.keras` model and a zip-layout PyTorch checkpoint are zip archives, and a
zip member can store almost nothing on disk yet declare gigabytes (a
"zip bomb"), or an archive can be padded with a member of zeros; both are
read into memory whole. The sizes the archive declares are checked first,
from its central directory, by `check_archive`:

- at most `MAX_MEMBERS` members;
- together they unpack to at most `SMALL_BYTES` plus `MAX_EXPANSION` times
  the archive's size on disk, and never more than `MAX_TOTAL_BYTES`.

Keras and torch store their members uncompressed (1:1), so genuine files
are far inside: a 250 MB model may unpack to 5 GB. Python's `zipfile`
never returns more than a member declares (a member whose data inflates
further fails its CRC check), so checking the declared sizes is enough.
"""

import os

from keras_cnn.errors import UserError

MAX_MEMBERS = 10_000
SMALL_BYTES = 32 * 2**20
MAX_EXPANSION = 20
MAX_TOTAL_BYTES = 8 * 2**30


def _mb(n):
    return f"{n / 2**20:,.1f} MB"


def limit_for(disk_bytes):
    """The most an archive of `disk_bytes` bytes may unpack to."""
    return min(MAX_TOTAL_BYTES, SMALL_BYTES + MAX_EXPANSION * disk_bytes)


def check_sizes(path, members, total, what):
    """A one-line `UserError` naming `path` (a `what`) if `members` members declaring `total` bytes are too many.

    The same bounds for every archive kind: zip (`check_archive`) and the
    tar archives data sets are downloaded as (`data.downloads.safe_extract`).
    """
    if members > MAX_MEMBERS:
        raise UserError(f"{path}: {what} holds {members:,} members, over the {MAX_MEMBERS:,} this package reads")
    disk = os.path.getsize(path)
    limit = limit_for(disk)
    if total > limit:
        raise UserError(f"{path}: {what} unpacks to {_mb(total)} from {_mb(disk)} on disk, over the {_mb(limit)} "
                        f"allowed ({SMALL_BYTES // 2**20} MB plus {MAX_EXPANSION} times the file's size, at most "
                        f"{MAX_TOTAL_BYTES // 2**30} GB): an archive bomb, not unpacked")


def check_archive(archive, path, what):
    """A one-line `UserError` naming `path` (a `what`, e.g. "model file") if `archive` may unpack too far.

    `archive` is an open `zipfile.ZipFile` of the file `path`.
    """
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise UserError(f"{path}: {what} is a zip archive of {len(infos):,} members, over the "
                        f"{MAX_MEMBERS:,} this package reads")
    total = sum(info.file_size for info in infos)
    disk = os.path.getsize(path)
    limit = limit_for(disk)
    if total > limit:
        biggest = max(infos, key=lambda info: info.file_size)
        raise UserError(
            f"{path}: {what} unpacks to {_mb(total)} from {_mb(disk)} on disk ({biggest.filename} alone "
            f"{_mb(biggest.file_size)}), over the {_mb(limit)} allowed ({SMALL_BYTES // 2**20} MB plus "
            f"{MAX_EXPANSION} times the file's size, at most {MAX_TOTAL_BYTES // 2**30} GB): a zip bomb "
            "or a padded file, not read")
