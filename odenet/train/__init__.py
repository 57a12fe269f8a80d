"""Training: config and presets, the Trainer, checkpoints and runs on disk, the background job manager,
throughput probes. Never imports odenet.inspect or odenet.app.
"""
