"""Numerics: Butcher tableaux, one stepping loop, fixed and adaptive solvers, gradients through a solve, test
problems. Imports nothing of odenet but errors and utils.
"""
