"""What a run costs before it starts: what a planned run is and its plan (experiment.py), FLOPs, time and money
(estimate.py), memory per GPU (memory.py), the accelerator table (hardware.py), scaling-law fits (scaling.py), the
ladder's shape family (shapes.py) and the ladder's sizing and fits (ladder.py)."""
