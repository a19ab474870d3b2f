"""Runs `keras-cnn` command lines in this one fresh process and reports how each ended.

    python -m tests.run_cli_cases CASES.json RESULTS.json WORK_DIR

CASES.json is a list of {"id", "argv"}; each argv goes to
`keras_cnn.commands.main`, as the `keras-cnn` command would pass it. For each
case RESULTS.json gets the exit code, stdout and stderr, whether TensorFlow
had been imported by then, and the paths under WORK_DIR that the case
created. test_cli.py uses it to run dozens of bad command lines in about a
second, and to prove that each fails before TensorFlow is even imported.
"""

import contextlib
import io
import json
import os
import sys
import traceback

from keras_cnn.commands import main


def tree(root):
    found = set()
    for folder, dirs, files in os.walk(root):
        found.update(os.path.join(folder, n) for n in dirs + files)
    return found


def run_case(argv, work_dir):
    before = tree(work_dir)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except Exception:  # a bug: keep going, so the other cases still report
            traceback.print_exc()
            code = "uncaught exception"
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue(),
            "tensorflow_imported": "tensorflow" in sys.modules,
            "created": sorted(tree(work_dir) - before)}


if __name__ == "__main__":
    cases_path, results_path, work_dir = sys.argv[1:4]
    with open(cases_path) as f:
        cases = json.load(f)
    os.chdir(work_dir)
    results = {case["id"]: run_case(case["argv"], work_dir) for case in cases}
    with open(results_path, "w") as f:
        json.dump(results, f, indent=1)
