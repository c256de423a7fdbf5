"""What a run costs before it starts: FLOPs, time and money (estimate.py), memory per GPU (memory.py), the
accelerator table (hardware.py), scaling-law fits (scaling.py) and the ladder's shape family (shapes.py)."""
