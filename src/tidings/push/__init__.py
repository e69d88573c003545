"""Web Push wake-ups (issue 13), sans-I/O: the message encryption of RFC 8291 (``aes128gcm``,
RFC 8188) in :mod:`.webpush`, VAPID (RFC 8292) in :mod:`.vapid`, and which push endpoints the
relay may call (:mod:`.endpoint`: no loopback or private addresses unless the operator allows
them). The relay sends a device a content-free wake-up through its push service; the device's
receiver decrypts it and connects. Nothing here does I/O or reads the clock.
"""
