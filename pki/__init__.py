"""Device PKI: device credential and PKI manager for MQTT fleets."""

__version__ = "0.1.0"
