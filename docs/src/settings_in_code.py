from voice2fa_middleware import Voice2FASettings

# From the environment (and .env), with a few values fixed in code: keywords win.
settings = Voice2FASettings.from_env(logout_url="/logout", help_url="/help", app_name="Example")

# Or every value in code: nothing is read from the environment.
strict = Voice2FASettings(
    secret_key="a-long-random-secret-from-your-vault",
    code_ttl=120,
    calls_per_user_per_hour=3,
    allowed_countries=("US", "CA"),
    remember_days=0,  # no "remember this device"
)
# app.add_middleware(Voice2FAMiddleware, identify=..., protect=[...], settings=settings)
