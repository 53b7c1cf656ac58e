"""Measuring a trained Nano on held-out simulator seeds (`molmoact2 eval nano`).

  closed_loop.py   one guarded episode in the simulator -> success, ticks, latency
  offline.py       held-out expert frames: pointing, counting, depth-code accuracy, action error
  nano_eval.py     the whole evaluation in worker processes, one JSON result
  report.py        that JSON as the README's markdown tables
"""
