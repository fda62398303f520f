"""Training: the loop (OBProx-SG sparsification, retraining), its configuration,
checkpoints, run folders, density tracking and several processes."""
