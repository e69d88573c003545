"""The device's local API: JSON-RPC 2.0 over a Unix socket in the device home (DESIGN §7).

:mod:`.rpc` frames requests and answers (sans-I/O), :mod:`.methods` is what the API can do,
:mod:`.server` serves it next to a running :class:`~tidings.client.Client` (``tidings daemon``),
:mod:`.forms` is the JSON form of everything it returns. docs/api.md documents every method.
"""
