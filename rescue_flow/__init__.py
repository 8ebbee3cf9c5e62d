"""rescue-flow: Nova rescue and unrescue for Hyper-V hosts.

Each request runs a TaskFlow linear flow in which every Hyper-V step has a
revert, so a failed step rolls the host back to exactly where it was.
"""
