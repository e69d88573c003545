"""The local web app (``tidings web``): chat with live ticks and every message's journey, served
by the device's own process on loopback (DESIGN §2, §7). :mod:`.guard` decides which requests
are the app's own; :mod:`.server` serves the pages and the API over HTTP."""
