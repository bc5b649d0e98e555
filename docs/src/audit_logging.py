import json
import logging


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in vars(record).items() if k.startswith("voice2fa_")}
        return json.dumps({"message": record.getMessage(), "level": record.levelname, **fields})


handler = logging.StreamHandler()
handler.setFormatter(JsonLines())
audit = logging.getLogger("voice2fa.audit")
audit.addHandler(handler)
audit.setLevel(logging.INFO)
