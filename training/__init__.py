"""Training, click simulation, datasets and NoC evaluation."""
