"""MNIST (packaged copy to torchvision's layout) and preprocessing of drawn or uploaded digits.
"""
