"""Evaluating click predictors: the simulated user (NoC protocol and its named variants) and NoC figures.

``clicker`` places the clicks of the simulated user (the RITM/iSegFormer NoC rule, the training rule
of iterative click simulation, and the propagation rule of the volume app); ``noc`` runs the protocol
on one object and turns per-object IoU curves into NoC@85/90 tables.
"""
