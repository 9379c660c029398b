"""Meter profiles, protocol codecs, transports, the poller, the command executor and the simulator."""
