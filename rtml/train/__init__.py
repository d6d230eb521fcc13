"""Training from a dataset store (``rtml train``): reads only the Zarr store.

- :class:`TrainConfig`: the settings of a run (stored in checkpoints), torch-free, and the
  ``rtml train`` options derived from it (:func:`add_train_options`, :func:`train_options`);
- :func:`train_rtml`: the learned model's training loop, resumable from its checkpoint;
- :func:`adapt_config`: the settings of ``rtml adapt`` (fine-tuning a trained model on
  ``shots`` trajectories of a new molecule, :func:`train_rtml` with ``init_state``);
- :func:`train_baseline`: fits the ridge (``linear``) or ``persistence`` baseline;
- :func:`load_training_data`: the store's training and validation trajectories;
- :func:`train_ground_state_guess` (``rtml train-guess``): the learned SCF starting density
  (:class:`rtml.model.GroundStateGuess`) from the ground states a store records.

Names resolve on first use (:func:`rtml._lazy.lazy_exports`), so reading the settings does
not import torch.
"""

from rtml._lazy import lazy_exports

__all__ = ["BASELINE_MODELS", "NEURAL_MODELS", "train_baseline", "TrainConfig", "train_rtml",
           "load_training_data", "add_train_options", "train_options", "ADAPT_EPOCHS", "ADAPT_LR",
           "adapt_config", "few_shot_selection", "prepare_trajectories", "fock_loss",
           "rollout_loss", "accumulate_batch", "train_ground_state_guess", "guess_samples",
           "GuessSample", "GUESS_METRICS_FILE"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "_config": ["TrainConfig", "BASELINE_MODELS", "NEURAL_MODELS", "add_train_options",
                "train_options", "ADAPT_EPOCHS", "ADAPT_LR", "adapt_config"],
    "_baselines": ["train_baseline"],
    "_train": ["train_rtml", "load_training_data", "prepare_trajectories", "fock_loss",
               "rollout_loss", "accumulate_batch"],
    "_shots": ["few_shot_selection"],
    "_guess": ["train_ground_state_guess", "guess_samples", "GuessSample", "GUESS_METRICS_FILE"],
})
