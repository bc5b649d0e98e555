"""What every other part stands on, importing nothing of the package but ``_errors``: codes
and signed tokens (``crypto``), same-site URLs and paths (``urls``), time limits on store
operations (``deadline``), audit events (``audit``), OpenTelemetry (``telemetry``), and the
leaf types of who is signed in and which paths need a second factor (``rules``)."""
