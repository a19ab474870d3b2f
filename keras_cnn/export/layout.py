"""The export folder: versions that are never overwritten, `models.config`, `export_model`.

TF Serving watches `<root>/<name>/` and serves the highest integer-named
folder in it; anything else there (our `tflite/` folder, and the hidden
reservation files and temporary folders of exports) is ignored. An existing
version is never replaced: a model that clients were served must stay
reproducible.

A version is published whole or not at all, even when several exports of the
same model run at once:

1. *Reserve*: an export claims its version number by creating
   `<root>/<name>/.v<version>.lock` with `O_CREAT | O_EXCL` (atomic on every
   local file system and on NFSv3+), holding its pid, host and start time. A
   version that is published or reserved is taken: an export without
   `--version` takes the next free number, one with `--version` fails at once.
2. *Build*: everything the version will hold (SavedModel, TFLite files,
   metadata, reports) is written into one hidden folder
   `<root>/<name>/.tmp-<pid>-<random>-v<version>/`; when all of it is written
   and checked, a `COMPLETE` marker is written there.
3. *Publish*: its `tflite/` and `saved_model/` subfolders are renamed to
   `<name>/tflite/<version>` and `<name>/<version>` (two renames in a row,
   microseconds apart), then the hidden folder and the lock are removed.

A kill -9 leaves the lock and the hidden folder behind. Every export first
cleans those of its model that are *stale* (the process that made them is
dead and they are older than `STALE_SECONDS`; from another host, older than
`FOREIGN_STALE_SECONDS`): a build without its `COMPLETE` marker is deleted,
a complete one killed between its two renames is published (rolled forward),
so a version never stays half-published.
"""

import contextlib
import datetime
import json
import os
import posixpath
import re
import shutil
import socket
import time
import uuid

from keras_cnn.errors import UserError
from keras_cnn.fileio import atomic_write_text, named_os_error

FORMATS = ("saved_model", "tflite_float32", "tflite_float16", "tflite_dynamic", "tflite_int8")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
CONFIG_NAME = "models.config"
DEFAULT_SERVING_BASE = "/models"

# Leftovers of a killed export are removed once older than this, and only if
# their process is gone (an export of a big model with int8 calibration takes
# minutes, never hours).
STALE_SECONDS = 10 * 60
# Leftovers written from another host (shared file system): their pid cannot
# be checked from here, so only their age counts.
FOREIGN_STALE_SECONDS = 24 * 60 * 60
COMPLETE_MARKER = "COMPLETE"
OWNER_FILE = "owner.json"
_LOCK = re.compile(r"^\.v(\d+)\.lock$")
_TMP = re.compile(r"^\.tmp-(\d+)-")


def parse_formats(text):
    """"saved_model,tflite_int8" -> ("saved_model", "tflite_int8"); "all" -> every format."""
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if items == ["all"]:
        return FORMATS
    unknown = [t for t in items if t not in FORMATS]
    if unknown or not items:
        raise UserError(f"unknown export format(s) {', '.join(unknown) or '(none given)'}; "
                        f"choose from: {', '.join(FORMATS)} (or all)")
    return tuple(f for f in FORMATS if f in items)


def check_name(name):
    if not NAME_PATTERN.match(name or ""):
        raise UserError(f"model name {name!r} must be letters, digits, '_' or '-' (at most 64, "
                        "starting with a letter or digit): it becomes a folder and a TF Serving model name")
    return name


def saved_model_dir(root, name, version):
    return os.path.join(root, name, str(version))


def tflite_dir(root, name, version):
    return os.path.join(root, name, "tflite", str(version))


def _int_folders(folder):
    if not os.path.isdir(folder):
        return []
    return [int(n) for n in os.listdir(folder) if n.isdigit() and os.path.isdir(os.path.join(folder, n))]


def existing_versions(root, name):
    """Every version of `name` that holds a SavedModel or TFLite files, sorted."""
    return sorted(set(_int_folders(os.path.join(root, name)))
                  | set(_int_folders(os.path.join(root, name, "tflite"))))


def reserved_versions(root, name):
    """Versions of `name` that an export (running, or killed and not yet cleaned) has reserved."""
    folder = os.path.join(root, name)
    if not os.path.isdir(folder):
        return []
    return sorted(int(m.group(1)) for m in map(_LOCK.match, os.listdir(folder)) if m)


def next_version(root, name):
    """The next version number of `name`: one above every published or reserved version."""
    versions = existing_versions(root, name) + reserved_versions(root, name)
    return max(versions) + 1 if versions else 1


# === Reservations and leftovers of killed exports ===

def _owner():
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _read_owner(path):
    """The owner record of a lock file or build folder, or None if it has none or it is unreadable."""
    target = os.path.join(path, OWNER_FILE) if os.path.isdir(path) else path
    try:
        with open(target) as f:
            owner = json.load(f)
        return owner if isinstance(owner, dict) and isinstance(owner.get("pid"), int) else None
    except (OSError, ValueError):
        return None


def is_stale(path, now=None):
    """Whether `path` (a lock file or `.tmp-*` entry) was left by an export that is gone.

    Stale: its process is dead on this host and it is older than
    `STALE_SECONDS`; written from another host: older than
    `FOREIGN_STALE_SECONDS`. Entries without an owner record (temporary
    files of `atomic_path`) carry their pid in their name.
    """
    try:
        age = (now or time.time()) - os.lstat(path).st_mtime
    except FileNotFoundError:
        return False
    owner = _read_owner(path)
    if owner is None:
        m = _TMP.match(os.path.basename(path))
        if not m:
            return False
        owner = {"pid": int(m.group(1)), "host": socket.gethostname()}
    if owner.get("host") != socket.gethostname():
        return age > FOREIGN_STALE_SECONDS
    return age > STALE_SECONDS and not _pid_alive(owner["pid"])


def _remove(path):
    with contextlib.suppress(FileNotFoundError):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def _publish(build, root, name, version):
    """Renames the parts of a complete build folder into place (the TFLite folder first).

    Parts already moved (a publication killed half-way) are skipped. If a
    rename fails, the parts this call moved go back, so nothing is left half
    published.
    """
    moves = [(os.path.join(build, part), target)
             for part, target in (("tflite", tflite_dir(root, name, version)),
                                  ("saved_model", saved_model_dir(root, name, version)))
             if os.path.isdir(os.path.join(build, part))]
    for _, target in moves:
        if os.path.lexists(target):
            raise UserError(f"{target}: appeared while exporting version {version} of model {name!r} "
                            "(written by something that does not reserve versions); not overwriting it")
    done = []
    try:
        for source, target in moves:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.rename(source, target)  # refuses a non-empty folder in the way
            done.append((source, target))
    except OSError as e:
        for source, target in reversed(done):
            with contextlib.suppress(OSError):
                os.rename(target, source)
        raise UserError(f"{moves[len(done)][1]}: cannot publish version {version} of model {name!r} "
                        f"({e.strerror or type(e).__name__}); nothing of it was published") from None


def clean_stale(root, name, log=print):
    """Removes (or, if complete, publishes) what killed exports of `name` left; returns what it did.

    Looks in `<root>/<name>/`, `<root>/<name>/tflite/` and `<root>/`.
    """
    folder = os.path.join(root, name)
    done = []
    if not os.path.isdir(folder):
        return done
    now = time.time()
    locks = {}
    for entry in os.listdir(folder):
        m = _LOCK.match(entry)
        if m:
            locks[int(m.group(1))] = os.path.join(folder, entry)
    # Builds first: a complete one killed between its renames is rolled forward under its own lock.
    for entry in sorted(os.listdir(folder)):
        path = os.path.join(folder, entry)
        if not (_TMP.match(entry) and is_stale(path, now)):
            continue
        m = re.search(r"-v(\d+)$", entry)
        version = int(m.group(1)) if m else None
        if (version is not None and os.path.isfile(os.path.join(path, COMPLETE_MARKER))
                and version in locks):
            try:
                _publish(path, root, name, version)
                done.append(f"published version {version} of {name!r} left complete by a killed export")
            except (UserError, OSError) as e:
                done.append(f"dropped a killed export's copy of version {version} of {name!r} ({e})")
        else:
            done.append(f"removed {path} (left by a killed export)")
        _remove(path)
    for version, lock in sorted(locks.items()):
        if is_stale(lock, now):
            _remove(lock)
            done.append(f"released version {version} of {name!r}, reserved by a killed export")
    for parent in (os.path.join(folder, "tflite"), root):
        if os.path.isdir(parent):
            for entry in os.listdir(parent):
                path = os.path.join(parent, entry)
                if _TMP.match(entry) and is_stale(path, now):
                    _remove(path)
                    done.append(f"removed {path} (left by a killed export)")
    for line in done:
        log(line)
    return done


def reserve_version(root, name, version):
    """Claims `version` of `name` for this process (an O_EXCL lock file); returns the lock's path.

    A `UserError` if it is published or another export holds it.
    """
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    lock = os.path.join(folder, f".v{version}.lock")
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        owner = _read_owner(lock) or {}
        who = f"pid {owner.get('pid', '?')} on {owner.get('host', '?')} since {owner.get('started', '?')}"
        raise UserError(f"{lock}: version {version} of model {name!r} is being exported by another process "
                        f"({who}); leave out --version for the next free one") from None
    with os.fdopen(fd, "w") as f:
        json.dump(_owner(), f)
    # Published by something that took no lock (or between our check and the lock): give it back.
    for target in (saved_model_dir(root, name, version), tflite_dir(root, name, version)):
        if os.path.lexists(target):
            _remove(lock)
            raise UserError(f"{target}: version {version} of model {name!r} already exists and versions are "
                            f"never overwritten; leave out --version for the next free one "
                            f"({next_version(root, name)})")
    return lock


def reserve_next_version(root, name, attempts=100):
    """Reserves the next free version of `name`; returns `(version, lock path)`."""
    for _ in range(attempts):
        version = next_version(root, name)
        try:
            return version, reserve_version(root, name, version)
        except UserError:
            continue  # another export took it a moment ago: try the next one
    raise UserError(f"{os.path.join(root, name)}: could not reserve a version of model {name!r} "
                    f"in {attempts} attempts (too many exports at once?)")


def served_models(root):
    """Names under `root` with at least one SavedModel version, sorted."""
    names = []
    if os.path.isdir(root):
        for name in sorted(os.listdir(root)):
            folder = os.path.join(root, name)
            if NAME_PATTERN.match(name) and any(
                    os.path.isfile(os.path.join(folder, str(v), "saved_model.pb")) for v in _int_folders(folder)):
                names.append(name)
    return names


def models_config_text(names, serving_base=DEFAULT_SERVING_BASE):
    """A TF Serving `--model_config_file` (ModelServerConfig text proto) for `names`."""
    lines = ["# Written by keras_cnn export; regenerated from the folders here on every export.",
             f"# Paths are as the server sees them (mounted at {serving_base}).",
             "model_config_list {"]
    for name in names:
        lines += ["  config {", f'    name: "{name}"',
                  f'    base_path: "{posixpath.join(serving_base, name)}"',
                  '    model_platform: "tensorflow"', "  }"]
    return "\n".join(lines + ["}"]) + "\n"


def write_models_config(root, serving_base=DEFAULT_SERVING_BASE):
    path = os.path.join(root, CONFIG_NAME)
    atomic_write_text(path, models_config_text(served_models(root), serving_base))
    return path


def check_version_free(root, name, formats, version=None):
    """(version, folders it will occupy); a `UserError` if any is taken or another export reserved it.

    Scripts call it before loading a model, so a taken version fails fast
    (`export_model` reserves the version for real when it starts writing).
    """
    check_name(name)
    formats = parse_formats(formats)
    if version is None:
        version = next_version(root, name)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise UserError(f"version must be a positive integer, got {version!r}")
    targets = ([saved_model_dir(root, name, version)] if "saved_model" in formats else []) + \
              ([tflite_dir(root, name, version)] if any(f.startswith("tflite_") for f in formats) else [])
    # A version is whole: TFLite files of version N beside another export's SavedModel N would be a
    # mixed version, so both folders must be free whatever this export writes.
    for target in (saved_model_dir(root, name, version), tflite_dir(root, name, version)):
        if os.path.lexists(target):
            raise UserError(f"{target}: version {version} of model {name!r} already exists and versions are "
                            f"never overwritten; leave out --version for the next free one "
                            f"({next_version(root, name)})")
    lock = os.path.join(root, name, f".v{version}.lock")
    if os.path.lexists(lock) and not is_stale(lock):
        owner = _read_owner(lock) or {}
        raise UserError(f"{lock}: version {version} of model {name!r} is being exported by another process "
                        f"(pid {owner.get('pid', '?')} on {owner.get('host', '?')}); leave out --version for "
                        f"the next free one")
    return version, targets


def export_model(servable, root, name, formats=FORMATS, version=None, representative_count=200,
                 check_count=32, serving_base=DEFAULT_SERVING_BASE, log=print):
    """Exports `servable` as version `version` (default: the next free one) of `name`.

    Returns a summary dict: version, paths, the SavedModel check and the
    TFLite reports. Raises `UserError` before writing anything if the version
    is taken (published, or reserved by another export running now). The
    version is reserved, built in one hidden folder and published whole (see
    the module doc); on any failure nothing of it is left behind.
    """
    from keras_cnn.export import saved_model, tflite

    formats = parse_formats(formats)
    check_version_free(root, name, formats, version)
    want_sm = "saved_model" in formats
    variants = [f[len("tflite_"):] for f in formats if f.startswith("tflite_")]
    # Folders this export creates around the version: removed again if it fails.
    new_folders = [f for f in (os.path.join(root, name, "tflite"), os.path.join(root, name), root)
                   if not os.path.exists(f)]
    lock = build = None
    try:
        clean_stale(root, name, log)
        if version is None:
            version, lock = reserve_next_version(root, name)
        else:
            lock = reserve_version(root, name, version)
        targets = ([saved_model_dir(root, name, version)] if want_sm else []) + \
                  ([tflite_dir(root, name, version)] if variants else [])
        build = os.path.join(root, name, f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}-v{version}")
        os.makedirs(build)
        with open(os.path.join(build, OWNER_FILE), "w") as f:
            json.dump(_owner(), f)

        metadata = {"name": name, "version": version,
                    "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    **servable.metadata()}
        check_images, truth = servable.check_set(check_count)
        representative = servable.images("train", representative_count) if "int8" in variants else None
        if representative is not None and len(representative) == 0:
            raise UserError("int8 export needs representative images, but the representative dataset is empty")
        images_source = (servable.images_dir
                         or f"the run's validation images ({(servable.source or {}).get('run', '?')})")
        summary = {"name": name, "version": version, "formats": list(formats)}
        if want_sm:
            sm_tmp = os.path.join(build, "saved_model")
            log(f"writing SavedModel {name} version {version}")
            saved_model.write_saved_model(servable, sm_tmp)
            check = saved_model.check_saved_model(sm_tmp, servable, check_images)
            worst = max(check["max_abs_diff_probabilities"].values())
            if worst > 1e-4:
                raise UserError(f"exported SavedModel disagrees with the Keras model "
                                f"(max |dp| {worst:.2e}); nothing was written")
            log(f"SavedModel check: max |dp| {worst:.2e} against Keras on {check['images']} images")
            saved_model.write_metadata(os.path.join(sm_tmp, saved_model.METADATA_PATH),
                                       {**metadata, "signatures": saved_model.SIGNATURE_INPUTS,
                                        "check": check})
            summary["saved_model"] = {"path": targets[0], "check": check}
        if variants:
            tfl_tmp = os.path.join(build, "tflite")
            os.makedirs(tfl_tmp)
            reports = tflite.export_tflite(servable, variants, tfl_tmp, name, check_images,
                                           representative, images_source, log, truth=truth)
            saved_model.write_metadata(os.path.join(tfl_tmp, "metadata.json"),
                                       {**metadata, **tflite.metadata(servable, reports)})
            summary["tflite"] = {"path": targets[-1], "reports": reports}
        # Everything is written and checked: from here on the version is published, even if this
        # process is killed between the two renames (the next export rolls it forward).
        with open(os.path.join(build, COMPLETE_MARKER), "w") as f:
            f.write("ok\n")
        _publish(build, root, name, version)
    except BaseException as e:
        for path in (build, lock):
            if path:
                _remove(path)
        for folder in new_folders:
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # only if empty
        if isinstance(e, OSError):
            # A write that names no file (or the hidden build folder's): name the model's export folder.
            named = named_os_error(e, os.path.join(root, name), build, unnamed=True)
            if named is not e:
                raise named from e
        raise
    _remove(build)
    _remove(lock)
    if want_sm:
        summary["models_config"] = write_models_config(root, serving_base)
    return summary
