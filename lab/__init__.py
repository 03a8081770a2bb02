"""edgemeta's workstation layer, torch-free: data sets, episodic evaluation, benchmarks.

Beside the device runtime (``edgemeta.runtime``), not inside it: a device never installs what
is here for its own sake. It may import the runtime; the runtime never imports it.
"""
