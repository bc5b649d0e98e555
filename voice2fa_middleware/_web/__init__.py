"""HTTP building blocks the flow and the endpoints share: the connection ``identify()``
gets (``connection``), pages and JSON responses (``pages``), bounded forms and CSRF checks
(``forms``), and the middleware's cookies and proofs (``cookies``)."""
