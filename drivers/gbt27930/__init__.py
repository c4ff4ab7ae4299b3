"""GB/T 27930 charger↔BMS CAN: sans-I/O cores (frames, tp, messages, session, pipeline),
replay of log files, and a listen-only python-can adapter (bus). See docs/CAN.md."""
