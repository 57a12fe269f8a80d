"""Looking inside a trained model: predictions, trajectories and PCA, ODE-ness across solvers, the non-digit
check.
"""
