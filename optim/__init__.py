"""Hand-written optimizers: drop-in torch.optim.Optimizer subclasses with fused updates."""
