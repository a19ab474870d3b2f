"""The export folder: versions that are never overwritten, `models.config`, `export_model`.

TF Serving watches `<root>/<name>/` and serves the highest integer-named
folder in it; anything else there (our `tflite/` folder and the hidden
temporary folders exports are written into) is ignored. A version is written
under a temporary name and renamed into place when complete, so the server
never sees half an export, and an existing version is never replaced: a model
that clients were served must stay reproducible.
"""

import contextlib
import datetime
import os
import posixpath
import re

from keras_cnn.errors import UserError
from keras_cnn.fileio import atomic_path, atomic_write_text

FORMATS = ("saved_model", "tflite_float32", "tflite_float16", "tflite_dynamic", "tflite_int8")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
CONFIG_NAME = "models.config"
DEFAULT_SERVING_BASE = "/models"


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


def next_version(root, name):
    versions = existing_versions(root, name)
    return versions[-1] + 1 if versions else 1


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
    """(version, folders it will occupy); a `UserError` if any is taken.

    Scripts call it before loading a model, so a taken version fails fast.
    """
    check_name(name)
    formats = parse_formats(formats)
    if version is None:
        version = next_version(root, name)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise UserError(f"version must be a positive integer, got {version!r}")
    targets = ([saved_model_dir(root, name, version)] if "saved_model" in formats else []) + \
              ([tflite_dir(root, name, version)] if any(f.startswith("tflite_") for f in formats) else [])
    for target in targets:
        if os.path.lexists(target):
            raise UserError(f"{target}: version {version} of model {name!r} already exists and versions are "
                            f"never overwritten; leave out --version for the next free one "
                            f"({next_version(root, name)})")
    return version, targets


def export_model(servable, root, name, formats=FORMATS, version=None, representative_count=200,
                 check_count=32, serving_base=DEFAULT_SERVING_BASE, log=print):
    """Exports `servable` as version `version` (default: the next free one) of `name`.

    Returns a summary dict: version, paths, the SavedModel check and the
    TFLite reports. Raises `UserError` before writing anything if the version
    exists; on any failure nothing of the new version is left behind.
    """
    from keras_cnn.export import saved_model, tflite

    formats = parse_formats(formats)
    version, targets = check_version_free(root, name, formats, version)
    want_sm = "saved_model" in formats
    variants = [f[len("tflite_"):] for f in formats if f.startswith("tflite_")]

    metadata = {"name": name, "version": version,
                "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                **servable.metadata()}
    check_images, truth = servable.check_set(check_count)
    representative = servable.images("train", representative_count) if "int8" in variants else None
    if representative is not None and len(representative) == 0:
        raise UserError("int8 export needs representative images, but the representative dataset is empty")
    images_source = servable.images_dir or f"the run's validation images ({servable.source.get('run_dir', '?')})"
    summary = {"name": name, "version": version, "formats": list(formats)}
    # Folders this export creates around the version: removed again if it fails.
    new_folders = [f for f in (os.path.join(root, name, "tflite"), os.path.join(root, name), root)
                   if not os.path.exists(f)]
    try:
        with contextlib.ExitStack() as stack:
            if want_sm:
                sm_tmp = stack.enter_context(atomic_path(targets[0], overwrite=False))
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
                tfl_target = targets[-1]
                tfl_tmp = stack.enter_context(atomic_path(tfl_target, overwrite=False))
                os.makedirs(tfl_tmp)
                reports = tflite.export_tflite(servable, variants, tfl_tmp, name, check_images,
                                               representative, images_source, log, truth=truth)
                saved_model.write_metadata(os.path.join(tfl_tmp, "metadata.json"),
                                           {**metadata, **tflite.metadata(servable, reports)})
                summary["tflite"] = {"path": tfl_target, "reports": reports}
    except BaseException:
        for folder in new_folders:
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # only if empty
        raise
    if want_sm:
        summary["models_config"] = write_models_config(root, serving_base)
    return summary
