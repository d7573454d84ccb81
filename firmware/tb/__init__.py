"""cocotb testbenches (``*_tb.py``), launched through :mod:`firmware.runner`, never collected by pytest."""
