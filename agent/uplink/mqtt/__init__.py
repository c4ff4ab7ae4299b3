"""The MQTT uplink plug-in."""
