from voice2fa_middleware import AuditEvent

SEEN: list[AuditEvent] = []


async def on_event(event: AuditEvent) -> None:  # sync or async
    """Every audit event: kind, user_id, client, time, detail. Codes and phone numbers never appear."""
    SEEN.append(event)
    if event.kind == "budget_exhausted" and event.detail.get("budget") in ("all", "phone"):
        print("someone is spending a shared call budget:", event.detail)


# app.add_middleware(Voice2FAMiddleware, identify=..., protect=[...], on_event=on_event)
