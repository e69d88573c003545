"""tidings: end-to-end guaranteed, end-to-end encrypted messaging.

The package mirrors the stack (see DESIGN.md §2): ``wire`` → ``noise`` → ``delivery`` → ``store``,
``net`` → ``server``, ``client`` → ``cli``.
"""

__version__ = "0.1.0"
