"""The relay bench's peers: the same workload against Mosquitto (MQTT) and Prosody (XMPP).

``servers.py`` makes each peer's server (config, data directory, accounts), ``run.py`` runs one
peer end to end, and the worker scripts ``_mqtt_worker.py`` and ``_xmpp_worker.py`` (on
``_worker.py``) drive its clients. ``bench/_relay_peers.py`` alternates them with tidings. See
``bench/README.md``, "Peers".
"""
