"""The microscope on an INTERSECT message bus: a service (:mod:`.service`) and a client backend (:mod:`.client`).

Needs the ``intersect`` extra (``intersect-sdk``) and an MQTT 5 broker (Mosquitto).
"""
