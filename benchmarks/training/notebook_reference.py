"""A faithful re-implementation of the seed notebook's code path, used as the baseline in
benchmarks and as the state_dict-compatibility reference in tests.

Same classes and control flow as the notebook (hand-written integrator steps, list of step
sizes, ``torch.ones_like(...) * t`` time channel, ``torch.cat``), minus the optimizer and
device handling that the notebook put inside the model.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class Euler:
    name = "Euler"
    order = 1

    @staticmethod
    def step(f, t, dt, y):
        return y + dt * f(t, y)


class RungeKutta4:
    name = "RungeKutta4"
    order = 4

    @staticmethod
    def step(f, t, dt, y):
        k1 = f(t, y)
        k2 = f(t + dt / 2, y + dt * k1 / 2)
        k3 = f(t + dt / 2, y + dt * k2 / 2)
        k4 = f(t + dt, y + dt * k3)
        return y + dt * (k1 + 2 * k2 + 2 * k3 + k4) / 6


class FixedStepSolver:
    def __init__(self, f, t0, t1, method, steps=None, step_size=None):
        self.f, self.t0, self.t1, self.method = f, t0, t1, method
        assert steps or step_size, "Either steps or step size should be defined!"
        if steps:
            self.hs = [(t1 - t0) / steps for s in range(steps)]
        else:
            self.hs = [step_size for _ in range(int((t1 - t0) / step_size))]
            if (t1 - t0) % step_size != 0:
                self.hs.append((t1 - t0) - sum(self.hs))

    def integrate(self, y):
        t = self.t0
        for h in self.hs:
            y = self.method.step(self.f, t, h, y)
            t += h
        return y


class Flatten(nn.Module):
    def forward(self, x):
        return x.view(x.size(0), -1)


class GradientNet(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(channels + 1, channels, 3, stride=1, padding=1),
                                    nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.block2 = nn.Sequential(nn.Conv2d(channels + 1, channels, 3, stride=1, padding=1),
                                    nn.BatchNorm2d(channels), nn.ReLU(inplace=True))

    def concat_time(self, t, x):
        return torch.cat([x, torch.ones_like(x[:, :1, :, :]) * t], 1)

    def forward(self, t, x):
        x = self.block1(self.concat_time(t, x))
        return self.block2(self.concat_time(t, x))


class RKNet(nn.Module):
    def __init__(self, solver, integrator, t0, t1, classes, steps=1):
        super().__init__()
        self.sampling = nn.Sequential(
            nn.Conv2d(1, 64, 3, stride=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, 4, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, 4, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True))
        self.gradient = GradientNet(channels=64)
        self.solver = solver(self.gradient, t0, t1, integrator, steps=steps)
        self.output = nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), Flatten(), nn.Linear(64, classes))

    def forward(self, x):
        x = self.sampling(x)
        x = self.solver.integrate(x)
        return self.output(x)
