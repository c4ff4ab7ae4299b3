"""`evgw run`: runner, wiring, devices, supervisor, systemd notify, status socket, metrics, logs."""
