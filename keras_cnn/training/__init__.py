"""Training plumbing shared by every task, one module per job.

- `runtime`: strategy, seeds, precision, global batch and learning rate (`setup_runtime`).
- `run_folder`: creating and resuming a run folder, its `history.csv` (`new_run`).
- `callbacks`: CSV log, atomic checkpoints, kill-safe backups, TensorBoard, stops on a
  non-finite loss and on SIGTERM / SIGINT.
- `loop`: `fit`, `model.fit` with those callbacks on any strategy.
- `saving`: `load_model` for `.keras` files with one-line errors.
"""

from keras_cnn.training.callbacks import (  # noqa: F401
    AtomicCheckpoint,
    NonFiniteLoss,
    ResumableCSVLogger,
    RunBackup,
    StopOnNaN,
    StopOnSignal,
    read_backup_state,
    standard_callbacks,
)
from keras_cnn.training.loop import fit  # noqa: F401
from keras_cnn.training.run_folder import (  # noqa: F401
    BACKUP_DIR,
    HISTORY_CSV,
    drop_history_from,
    last_training_metrics,
    new_run,
    prepare_run_dir,
    read_best,
    read_history,
    run_config,
)
from keras_cnn.training.runtime import Runtime, mixed_policy, setup_runtime  # noqa: F401
from keras_cnn.training.saving import load_model  # noqa: F401
