"""Test doubles that speak real protocols: the loopback adb device and its device profiles."""
