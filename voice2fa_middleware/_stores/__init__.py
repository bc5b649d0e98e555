"""Where challenges and counters live: the ``Store`` protocol and its value types
(``base``), ``MemoryStore`` (``memory``) and ``RedisStore`` (``redis``, with its scripts,
connections and pipelined batches). Public names are re-exported by
``voice2fa_middleware.stores``."""
