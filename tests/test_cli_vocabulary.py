"""One vocabulary for both applications: every subcommand's parser, walked against `keras_cnn.vocabulary`.

A thing both applications have is spelled one way in every command that has
it (`--dataset`, `--num-classes`, `--input`, `--out-dir`, ...), an old
spelling still works where it was used and prints exactly one deprecation
line, and docs/CLI.md lists the same table. The parsers are built as
`keras-cnn COMMAND --help` builds them, without TensorFlow.
"""

import argparse
import glob
import importlib
import os
import re
import shlex

import pytest

from keras_cnn import vocabulary
from keras_cnn.commands import COMMANDS
from tests.helpers import REPO


class _Built(Exception):
    pass


def _capture(self, args=None, namespace=None):
    raise _Built(self)


def build_parser(command):
    """The argparse parser of `keras-cnn COMMAND`, as its module builds it (nothing parsed, nothing run)."""
    module = importlib.import_module(f"keras_cnn.commands.{COMMANDS[command]}")
    original = argparse.ArgumentParser.parse_args
    argparse.ArgumentParser.parse_args = _capture
    try:
        module.parse_args([], prog=f"keras-cnn {command}")
    except _Built as built:
        return built.args[0]
    finally:
        argparse.ArgumentParser.parse_args = original
    raise AssertionError(f"{command}: parse_args did not build a parser")


def is_hidden(action):
    return action.help == argparse.SUPPRESS


@pytest.fixture(scope="module")
def parsers():
    return {command: build_parser(command) for command in COMMANDS}


def flags(parser, hidden=False):
    """{flag: action} of the long flags `--help` shows (or, with `hidden`, of those it hides)."""
    return {option: action for action in parser._actions if is_hidden(action) == hidden
            for option in action.option_strings if option.startswith("--") and not option.startswith("--no-")}


@pytest.mark.parametrize("term", vocabulary.TERMS, ids=[t.flag for t in vocabulary.TERMS])
def test_a_thing_both_applications_have_is_spelled_one_way(parsers, term):
    have = sorted(c for c, p in parsers.items() if term.flag in flags(p))
    assert have == sorted(term.commands), (
        f"{term.flag} ({term.meaning}) is a flag of {have}; the vocabulary says {sorted(term.commands)}")
    for old, where in term.old:
        for command in where:
            assert old not in flags(parsers[command]), \
                f"keras-cnn {command} shows {old} where the vocabulary says {term.flag}"
    # A name that is only ever an old one is shown by no command at all.
    current = {t.flag for t in vocabulary.TERMS}
    for old, _ in term.old:
        if old.startswith("--") and old not in current:
            shown = sorted(c for c, p in parsers.items() if old in flags(p))
            assert not shown, f"{old} is the old name of {term.flag}, yet {shown} show it"


def test_a_file_flag_is_never_a_list_of_names(parsers):
    # `--model` names a saved model (or a served one), never an architecture to build.
    for command, parser in parsers.items():
        model = flags(parser).get("--model")
        assert model is None or not model.choices, f"keras-cnn {command} --model picks from {model.choices}"


# (command, argv with the old name, argv with the new one, the one line on stderr). Both argvs must
# give the same parsed arguments unless the last field is False.
ALIASES = [
    ("train-colorization", ["--run-dir", "r", "--source", "folder"], ["--run-dir", "r", "--dataset", "folder"],
     "warning: --source is deprecated; use --dataset", True),
    ("train-colorization", ["--run-dir", "r", "--num-colours", "8"], ["--run-dir", "r", "--num-classes", "8"],
     "warning: --num-colours is deprecated; use --num-classes", True),
    ("train-colorization", ["--run-dir", "r", "--model", "resunet"], ["--run-dir", "r", "--backbone", "resunet"],
     "warning: --model is deprecated; use --backbone", True),
    ("tflite-predict", ["--model", "m.tflite", "--image", "a.jpg", "--out-dir", "o"],
     ["--model", "m.tflite", "--input", "a.jpg", "--out-dir", "o"],
     "warning: --image is deprecated; use --input", True),
    ("tflite-predict", ["--model", "m.tflite", "--input", "a.jpg", "--out", "a.png"],
     ["--model", "m.tflite", "--input", "a.jpg", "--out-dir", "o"],
     "warning: --out is deprecated; use --out-dir", False),
    ("serving-client", ["--rest", "http://h:8501", "--model", "m", "--out", "o", "--input", "a.jpg"],
     ["--rest", "http://h:8501", "--model", "m", "--out-dir", "o", "--input", "a.jpg"],
     "warning: --out is deprecated; use --out-dir", True),
    ("serving-client", ["--rest", "http://h:8501", "--model", "m", "--size", "32", "--out-dir", "o", "--input",
                        "a.jpg"],
     ["--rest", "http://h:8501", "--model", "m", "--image-size", "32", "--out-dir", "o", "--input", "a.jpg"],
     "warning: --size is deprecated; use --image-size", True),
    ("serving-client", ["--rest", "http://h:8501", "--model", "m", "--out-dir", "o", "a.jpg"],
     ["--rest", "http://h:8501", "--model", "m", "--out-dir", "o", "--input", "a.jpg"],
     "warning: photos without --input are deprecated; use --input PHOTO ...", True),
]


def parse(command, argv):
    module = importlib.import_module(f"keras_cnn.commands.{COMMANDS[command]}")
    return vars(module.parse_args(argv, prog=f"keras-cnn {command}"))


@pytest.mark.parametrize("command,old,new,line,same", ALIASES, ids=[f"{a[0]}:{a[3].split()[1]}" for a in ALIASES])
def test_an_old_name_prints_one_deprecation_line_and_keeps_working(capsys, command, old, new, line, same):
    parsed_old = parse(command, old)
    assert capsys.readouterr().err == line + "\n"
    parsed_new = parse(command, new)
    assert capsys.readouterr().err == ""
    if same:
        # The positional photos of serving-client land in their own slot; what the command reads is `images`.
        parsed_old.pop("photos", None), parsed_new.pop("photos", None)
        parsed_old.pop("input", None), parsed_new.pop("input", None)
        assert parsed_old == parsed_new
    else:
        assert parsed_old["out"] == "a.png" and parsed_new["out_dir"] == "o"


def test_every_old_name_has_a_case_above(parsers):
    covered = {(command, line.split()[1]) for command, _, _, line, _ in ALIASES}
    hidden = {(command, option) for command, parser in parsers.items() for option in flags(parser, hidden=True)}
    assert hidden <= covered, f"old names without a case: {sorted(hidden - covered)}"
    listed = {(command, old.split()[0]) for term in vocabulary.TERMS for old, where in term.old for command in where}
    assert listed == covered, f"vocabulary.TERMS and the cases differ: {sorted(listed ^ covered)}"


def test_a_required_flag_given_by_its_old_name_is_not_missing(capsys):
    parse("tflite-predict", ["--model", "m.tflite", "--image", "a.jpg", "--out-dir", "o"])
    capsys.readouterr()
    with pytest.raises(Exception, match="the following arguments are required: --input"):
        parse("tflite-predict", ["--model", "m.tflite", "--out-dir", "o"])


def test_evaluate_segmentation_lists_only_evaluation_flags(parsers):
    shown = flags(parsers["evaluate-segmentation"])
    training = {"--epochs", "--learning-rate", "--backbone", "--optimizer", "--augment", "--time-limit-minutes",
                "--image-size", "--strategy"}
    assert not training & set(shown), sorted(training & set(shown))
    assert {"--run-dir", "--checkpoint", "--model", "--data-dir", "--dataset", "--split", "--json",
            "--out"} <= set(shown)
    assert "weizmann_scratch: 300" not in parsers["evaluate-segmentation"].format_help()


@pytest.mark.parametrize("command", COMMANDS)
def test_help_examples_use_the_installed_command(parsers, command):
    text = parsers[command].description
    assert "scripts/" not in text and "python " not in text, text
    examples = [line.strip() for line in text.splitlines() if line.startswith("    ") and not line.startswith("     ")
                and not line.strip().startswith("#")]
    assert examples and all(e.startswith(f"keras-cnn {command}") or e.startswith("keras-cnn ") for e in examples), \
        examples
    assert any(e.startswith(f"keras-cnn {command}") for e in examples), examples


def test_docs_cli_md_prints_the_same_vocabulary():
    with open(os.path.join(REPO, "docs", "CLI.md"), encoding="utf-8") as f:
        text = f.read()
    shared = text.split("## The flags both applications share")[1].split("\n## ")[0]
    rows = {m.group(1) for m in re.finditer(r"^\| `(--[a-z-]+)`", shared, re.MULTILINE)}
    assert rows == {t.flag for t in vocabulary.TERMS}, sorted(rows ^ {t.flag for t in vocabulary.TERMS})
    old_names = text.split("## Old names")[1].split("\n## ")[0]
    for term in vocabulary.TERMS:
        for old, where in term.old:
            assert f"| `{old}` | {', '.join(where)} | `{term.flag}` |" in old_names, old


def documented_commands():
    """(file, command, argv) of every `keras-cnn COMMAND ...` line in a code block of the README and docs/."""
    found = []
    for path in ["README.md", *sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))]:
        with open(os.path.join(REPO, path), encoding="utf-8") as f:
            text = re.sub(r"\\\n\s*", " ", f.read())  # continuation lines
        inside = False
        for line in text.splitlines():
            if line.startswith("```"):
                inside = not inside
                continue
            if not (inside or line.startswith("    ")):
                continue
            m = re.search(r"(?:^|[\s(])keras-cnn ([a-z0-9-]+)((?: [^#|]*)?)", line)
            if not m or m.group(1) not in COMMANDS or "$" in line:
                continue
            rest = m.group(2).split(" &")[0].strip()
            if "..." in rest or "[" in rest or "<" in rest or rest.isupper():
                continue  # a pattern, not a command
            found.append((os.path.basename(path), m.group(1), shlex.split(rest)))
    return found


def test_every_documented_command_parses_with_todays_names(capsys):
    commands = documented_commands()
    assert len(commands) > 50
    for path, command, argv in commands:
        try:
            parse(command, argv)
        except Exception as e:  # a UserError from argparse: an unknown or missing flag
            pytest.fail(f"{path}: keras-cnn {command} {' '.join(argv)}: {e}")
        err = capsys.readouterr().err
        assert err == "", f"{path}: keras-cnn {command} {' '.join(argv)}: {err}"
