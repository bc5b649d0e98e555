"""What RedisStore keeps in Redis, in bytes: ``MEMORY USAGE`` of each kind of key, and the
growth of ``used_memory`` per pending challenge (every key a challenge adds, counters too).

Usage: python benchmarks/redis_memory.py [--challenges 10000]  (needs redis-server)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.run import start_redis  # noqa: E402
from voice2fa_middleware import RedisStore  # noqa: E402
from voice2fa_middleware._core.crypto import Keyring, generate_code, new_id  # noqa: E402
from voice2fa_middleware._stores.base import Bucket, Challenge, challenge_id, own_slot, user_key  # noqa: E402


def challenge(keys: Keyring, user: str, phone: str, now: float) -> Challenge:
    """A pending challenge as the middleware makes one (same field sizes)."""
    user_tag = keys.tag("user", user)
    cid = challenge_id(user_tag)
    code = generate_code(6)
    return Challenge(
        id=cid,
        user_tag=user_tag,
        phone=phone,
        code_mac=keys.code_mac(cid, code),
        code=code,
        created_at=now,
        expires_at=now + 300,
        language="en",
        binding=keys.tag("binding", f'["{user}", "{phone}", ""]'),
        calls=1,
        last_call_at=now,
        call_nonce=new_id(12),
        call_status="queued",
        call_sid="CA" + "0" * 32,
    )


async def measure(url: str, count: int) -> None:
    store = RedisStore(url)
    raw = store._redis
    keys = Keyring(["bench-secret-key-0123456789abcdef"])
    try:
        before = (await raw.info("memory"))["used_memory"]
        now = time.time()
        for n in range(count):
            ch = challenge(keys, f"user-{n}", f"+1202555{n % 10000:04d}", now)
            phone_tag = keys.tag("phone", ch.phone)
            user = user_key(ch.user_tag)
            own = Bucket("calls:user:" + user, 10, 3600)
            client = Bucket("calls:client:" + own_slot(keys.tag("client", f"10.0.{n // 256 % 256}.0/24")), 100, 3600)
            await store.start(
                ch,
                lockout=Bucket("fail:" + user, 10, 3600),
                known_key=f"known:{user}:{phone_tag}",
                known=[],
                new=[
                    Bucket("calls:all", 10**9, 3600),
                    Bucket("calls:phone:" + own_slot(phone_tag), 10, 3600),
                    own,
                    client,
                ],
                now=now,
            )
            await store.hit("fail:" + user, 900, now)  # one wrong code each
        after = (await raw.info("memory"))["used_memory"]
        sample = challenge(keys, "user-0", "+12025550000", now)
        user = user_key(sample.user_tag)
        kinds = {
            "challenge (hash)": f"voice2fa:ch:{{{sample.id.split('.')[0]}}}",
            "user's live-challenge pointer": f"voice2fa:u:{user}",
            "counter (calls per user)": f"voice2fa:n:calls:user:{user}",
            "counter (failures)": f"voice2fa:n:fail:{user}",
        }
        print(f"{'key':34} {'MEMORY USAGE bytes':>19}")
        for name, pattern in kinds.items():
            found = [k async for k in raw.scan_iter(match=pattern.replace("{", "\\{").replace("}", "\\}") + "*")]
            size = await raw.memory_usage(found[0], samples=0) if found else 0
            print(f"{name:34} {size:19}")
        print(
            f"used_memory grew {(after - before) / count:.0f} bytes per pending challenge "
            f"({count} challenges, each with its pointer, its user's and failure counters, "
            "and a share of the phone and client counters)"
        )
    finally:
        await store.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--challenges", type=int, default=10_000)
    args = parser.parse_args()
    redis = start_redis()
    if redis is None:
        sys.exit("redis-server is needed: apt-get install redis-server")
    try:
        asyncio.run(measure(redis[1], args.challenges))
    finally:
        redis[0].terminate()


if __name__ == "__main__":
    main()
