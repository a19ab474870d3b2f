"""Discriminative learning rates: one Keras optimizer, a smaller rate for chosen weights.

Fine-tuning a pretrained backbone under a new head works best with the head
learning fast and the backbone slowly (Howard & Ruder 2018, "Universal
Language Model Fine-tuning"; the usual 10x split of DeepLab fine-tuning).
Keras 3 optimizers have one learning rate; freezing the backbone for a
while (the two-stage recipe) is the coarse substitute. `scale_learning_rate`
gives the chosen variables `factor` times the optimizer's rate at every
step, schedule included, inside the optimizer's own update, so Adam's
moments and every distribution strategy behave as usual.
"""

__all__ = ["scale_learning_rate"]


def scale_learning_rate(optimizer, variables, factor):
    """Makes `optimizer` step `variables` at `factor` x its learning rate; returns `optimizer`.

    Decoupled weight decay (AdamW, SGD's `weight_decay`) stays at the base
    rate for every variable: Keras applies it outside the per-variable update.
    The optimizer's saved config is its class's own, so a `.keras` file of the
    model loads without this package; training that resumes rebuilds the
    optimizer from the run's config.

    Args:
        optimizer: a Keras 3 optimizer instance, not yet used.
        variables: the variables (e.g. `backbone.trainable_weights`) to scale.
        factor: the multiplier, > 0 (1 leaves the optimizer as it is).

    Example:
        opt = scale_learning_rate(keras.optimizers.AdamW(2e-3), model.backbone.trainable_weights, 0.1)
    """
    factor = float(factor)
    if not factor > 0:
        raise ValueError(f"the learning-rate factor must be > 0, got {factor}")
    if factor == 1.0 or not variables:
        return optimizer
    scaled = {optimizer._var_key(v) for v in variables}
    update_step = optimizer.update_step

    def update_step_scaled(gradient, variable, learning_rate):
        if optimizer._var_key(variable) in scaled:
            learning_rate = learning_rate * factor
        return update_step(gradient, variable, learning_rate)

    optimizer.update_step = update_step_scaled
    return optimizer
