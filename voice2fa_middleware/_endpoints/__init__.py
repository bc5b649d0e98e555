"""The middleware's own endpoints under its prefix: the verify page and its JSON twin
(``verify``), the phone page (``enrol``), the provider's webhooks (``webhooks``), the
development phone (``dev_phone``), and the router over them (``router``)."""
