"""Hardware-in-the-loop emulator: the twin behind the wire protocol, on a pty or a TCP socket."""
