"""The T/CEC 102 uplink plug-in."""
