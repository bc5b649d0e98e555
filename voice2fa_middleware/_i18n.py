"""What the page shows and the call says, in English, Spanish, French and German."""

from __future__ import annotations

from collections.abc import Iterable

# LaML ``language`` attribute for each supported language.
SPEECH_LANGUAGES: dict[str, str] = {"en": "en-US", "es": "es-ES", "fr": "fr-FR", "de": "de-DE"}

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "say.intro": "Hello. This is a verification call{app}. Press any key to hear your code.",
        "say.no_key": "We did not receive a key press. Goodbye.",
        "say.code": "Your verification code is: {digits}.",
        "say.again": "Again, your code is: {digits}.",
        "say.repeat": "Press 1 to hear it again.",
        "say.goodbye": "Thank you. Goodbye.",
        "say.expired": "This code has expired. Please request a new call. Goodbye.",
        "page.title": "Verify it's you",
        "page.lead": "We are calling {phone}. Answer, press a key, and type the code you hear.",
        "page.code_label": "Verification code",
        "page.code_hint": "{digits} digits, spoken twice",
        "page.submit": "Verify",
        "page.resend": "Call me again",
        "page.resend_wait": "You can ask for a new call in {seconds} s.",
        "page.remember": "Remember this device for {days} days",
        "page.cancel": "Cancel",
        "page.signout": "Sign out",
        "page.status": "Call status",
        "page.status.queued": "Calling…",
        "page.status.initiated": "Calling…",
        "page.status.ringing": "Ringing…",
        "page.status.in-progress": "Answered: listen for your code.",
        "page.status.answered": "Answered: listen for your code.",
        "page.status.completed": "The call has ended.",
        "page.status.busy": "The line was busy. Ask for a new call.",
        "page.status.no-answer": "The call was not answered. Ask for a new call.",
        "page.status.failed": "The call could not be completed. Ask for a new call.",
        "page.status.canceled": "The call was canceled. Ask for a new call.",
        "page.sent": "We are calling you again. The previous code no longer works.",
        "error.invalid_code": "That code is not right or has expired.",
        "error.attempts_left": "{n} attempts left.",
        "error.dead": "Too many wrong codes. Ask for a new call.",
        "error.no_challenge": "No verification is in progress, or it has expired.",
        "error.continue": "Start again",
        "error.locked": "Too many wrong codes. Try again in {minutes} minutes.",
        "error.rate_limited": "Too many calls. Try again in {seconds} seconds.",
        "error.call_failed": "We could not place the call. Please try again.",
        "error.provider_unavailable": "Calls are unavailable right now. Please try again in a minute.",
        "error.store": "Verification is unavailable right now. Please try again shortly.",
        "error.phone": "We cannot call the phone number on your account.",
        "error.csrf": "This form has expired or came from another site. Reload the page and try again.",
        "error.bad_request": "The request could not be understood.",
        "error.too_large": "The request is too large.",
        "error.timeout": "The request took too long to arrive. Please try again.",
        "error.changed": "Your account's phone changed while you were verifying. Please start again.",
        "error.title": "Verification",
    },
    "es": {
        "say.intro": "Hola. Esta es una llamada de verificación{app}. Pulse cualquier tecla para escuchar su código.",
        "say.no_key": "No hemos recibido ninguna tecla. Adiós.",
        "say.code": "Su código de verificación es: {digits}.",
        "say.again": "Repito, su código es: {digits}.",
        "say.repeat": "Pulse 1 para escucharlo de nuevo.",
        "say.goodbye": "Gracias. Adiós.",
        "say.expired": "Este código ha caducado. Solicite una nueva llamada. Adiós.",
        "page.title": "Confirme que es usted",
        "page.lead": "Estamos llamando al {phone}. Conteste, pulse una tecla y escriba el código que oiga.",
        "page.code_label": "Código de verificación",
        "page.code_hint": "{digits} dígitos, dichos dos veces",
        "page.submit": "Verificar",
        "page.resend": "Llamarme otra vez",
        "page.resend_wait": "Podrá pedir una nueva llamada en {seconds} s.",
        "page.remember": "Recordar este dispositivo durante {days} días",
        "page.cancel": "Cancelar",
        "page.signout": "Cerrar sesión",
        "page.status": "Estado de la llamada",
        "page.status.queued": "Llamando…",
        "page.status.initiated": "Llamando…",
        "page.status.ringing": "Sonando…",
        "page.status.in-progress": "Contestada: escuche su código.",
        "page.status.answered": "Contestada: escuche su código.",
        "page.status.completed": "La llamada ha terminado.",
        "page.status.busy": "La línea estaba ocupada. Pida una nueva llamada.",
        "page.status.no-answer": "No se contestó la llamada. Pida una nueva llamada.",
        "page.status.failed": "No se pudo completar la llamada. Pida una nueva llamada.",
        "page.status.canceled": "La llamada se canceló. Pida una nueva llamada.",
        "page.sent": "Le estamos llamando de nuevo. El código anterior ya no sirve.",
        "error.invalid_code": "El código no es correcto o ha caducado.",
        "error.attempts_left": "Quedan {n} intentos.",
        "error.dead": "Demasiados códigos incorrectos. Pida una nueva llamada.",
        "error.no_challenge": "No hay ninguna verificación en curso, o ha caducado.",
        "error.continue": "Empezar de nuevo",
        "error.locked": "Demasiados códigos incorrectos. Inténtelo dentro de {minutes} minutos.",
        "error.rate_limited": "Demasiadas llamadas. Inténtelo dentro de {seconds} segundos.",
        "error.call_failed": "No pudimos realizar la llamada. Inténtelo de nuevo.",
        "error.provider_unavailable": "Las llamadas no están disponibles ahora. Inténtelo dentro de un minuto.",
        "error.store": "La verificación no está disponible ahora. Inténtelo en breve.",
        "error.phone": "No podemos llamar al número de teléfono de su cuenta.",
        "error.csrf": "Este formulario ha caducado o viene de otro sitio. Recargue la página.",
        "error.bad_request": "No se pudo entender la solicitud.",
        "error.too_large": "La solicitud es demasiado grande.",
        "error.timeout": "La solicitud tardó demasiado en llegar. Inténtelo de nuevo.",
        "error.changed": "El teléfono de su cuenta cambió durante la verificación. Empiece de nuevo.",
        "error.title": "Verificación",
    },
    "fr": {
        "say.intro": "Bonjour. Ceci est un appel de vérification{app}. Appuyez sur une touche pour entendre votre code.",
        "say.no_key": "Nous n'avons reçu aucune touche. Au revoir.",
        "say.code": "Votre code de vérification est : {digits}.",
        "say.again": "Je répète, votre code est : {digits}.",
        "say.repeat": "Appuyez sur 1 pour l'entendre à nouveau.",
        "say.goodbye": "Merci. Au revoir.",
        "say.expired": "Ce code a expiré. Demandez un nouvel appel. Au revoir.",
        "page.title": "Confirmez votre identité",
        "page.lead": "Nous appelons le {phone}. Répondez, appuyez sur une touche et saisissez le code entendu.",
        "page.code_label": "Code de vérification",
        "page.code_hint": "{digits} chiffres, dits deux fois",
        "page.submit": "Vérifier",
        "page.resend": "M'appeler à nouveau",
        "page.resend_wait": "Vous pourrez demander un nouvel appel dans {seconds} s.",
        "page.remember": "Se souvenir de cet appareil pendant {days} jours",
        "page.cancel": "Annuler",
        "page.signout": "Se déconnecter",
        "page.status": "État de l'appel",
        "page.status.queued": "Appel en cours…",
        "page.status.initiated": "Appel en cours…",
        "page.status.ringing": "Ça sonne…",
        "page.status.in-progress": "Décroché : écoutez votre code.",
        "page.status.answered": "Décroché : écoutez votre code.",
        "page.status.completed": "L'appel est terminé.",
        "page.status.busy": "La ligne était occupée. Demandez un nouvel appel.",
        "page.status.no-answer": "L'appel est resté sans réponse. Demandez un nouvel appel.",
        "page.status.failed": "L'appel a échoué. Demandez un nouvel appel.",
        "page.status.canceled": "L'appel a été annulé. Demandez un nouvel appel.",
        "page.sent": "Nous vous rappelons. L'ancien code ne fonctionne plus.",
        "error.invalid_code": "Ce code est incorrect ou a expiré.",
        "error.attempts_left": "Encore {n} essais.",
        "error.dead": "Trop de codes erronés. Demandez un nouvel appel.",
        "error.no_challenge": "Aucune vérification en cours, ou elle a expiré.",
        "error.continue": "Recommencer",
        "error.locked": "Trop de codes erronés. Réessayez dans {minutes} minutes.",
        "error.rate_limited": "Trop d'appels. Réessayez dans {seconds} secondes.",
        "error.call_failed": "Nous n'avons pas pu passer l'appel. Réessayez.",
        "error.provider_unavailable": "Les appels sont indisponibles pour le moment. Réessayez dans une minute.",
        "error.store": "La vérification est indisponible pour le moment. Réessayez bientôt.",
        "error.phone": "Nous ne pouvons pas appeler le numéro de votre compte.",
        "error.csrf": "Ce formulaire a expiré ou vient d'un autre site. Rechargez la page.",
        "error.bad_request": "La requête est incompréhensible.",
        "error.too_large": "La requête est trop volumineuse.",
        "error.timeout": "La requête a mis trop de temps à arriver. Veuillez réessayer.",
        "error.changed": "Le téléphone de votre compte a changé pendant la vérification. Recommencez.",
        "error.title": "Vérification",
    },
    "de": {
        "say.intro": "Hallo. Dies ist ein Bestätigungsanruf{app}. Drücken Sie eine beliebige Taste, um Ihren Code zu hören.",
        "say.no_key": "Wir haben keinen Tastendruck erhalten. Auf Wiederhören.",
        "say.code": "Ihr Bestätigungscode lautet: {digits}.",
        "say.again": "Noch einmal, Ihr Code lautet: {digits}.",
        "say.repeat": "Drücken Sie die 1, um ihn noch einmal zu hören.",
        "say.goodbye": "Danke. Auf Wiederhören.",
        "say.expired": "Dieser Code ist abgelaufen. Fordern Sie einen neuen Anruf an. Auf Wiederhören.",
        "page.title": "Bestätigen Sie, dass Sie es sind",
        "page.lead": "Wir rufen {phone} an. Nehmen Sie ab, drücken Sie eine Taste und geben Sie den gehörten Code ein.",
        "page.code_label": "Bestätigungscode",
        "page.code_hint": "{digits} Ziffern, zweimal gesprochen",
        "page.submit": "Bestätigen",
        "page.resend": "Erneut anrufen",
        "page.resend_wait": "Einen neuen Anruf können Sie in {seconds} s anfordern.",
        "page.remember": "Dieses Gerät {days} Tage lang merken",
        "page.cancel": "Abbrechen",
        "page.signout": "Abmelden",
        "page.status": "Anrufstatus",
        "page.status.queued": "Wird angerufen…",
        "page.status.initiated": "Wird angerufen…",
        "page.status.ringing": "Es klingelt…",
        "page.status.in-progress": "Angenommen: hören Sie Ihren Code.",
        "page.status.answered": "Angenommen: hören Sie Ihren Code.",
        "page.status.completed": "Der Anruf ist beendet.",
        "page.status.busy": "Die Leitung war besetzt. Fordern Sie einen neuen Anruf an.",
        "page.status.no-answer": "Der Anruf wurde nicht angenommen. Fordern Sie einen neuen Anruf an.",
        "page.status.failed": "Der Anruf ist fehlgeschlagen. Fordern Sie einen neuen Anruf an.",
        "page.status.canceled": "Der Anruf wurde abgebrochen. Fordern Sie einen neuen Anruf an.",
        "page.sent": "Wir rufen Sie erneut an. Der vorige Code gilt nicht mehr.",
        "error.invalid_code": "Dieser Code ist falsch oder abgelaufen.",
        "error.attempts_left": "Noch {n} Versuche.",
        "error.dead": "Zu viele falsche Codes. Fordern Sie einen neuen Anruf an.",
        "error.no_challenge": "Keine Bestätigung läuft, oder sie ist abgelaufen.",
        "error.continue": "Neu beginnen",
        "error.locked": "Zu viele falsche Codes. Versuchen Sie es in {minutes} Minuten erneut.",
        "error.rate_limited": "Zu viele Anrufe. Versuchen Sie es in {seconds} Sekunden erneut.",
        "error.call_failed": "Wir konnten nicht anrufen. Bitte versuchen Sie es erneut.",
        "error.provider_unavailable": "Anrufe sind gerade nicht möglich. Bitte in einer Minute erneut versuchen.",
        "error.store": "Die Bestätigung ist gerade nicht verfügbar. Bitte gleich erneut versuchen.",
        "error.phone": "Wir können die Telefonnummer Ihres Kontos nicht anrufen.",
        "error.csrf": "Dieses Formular ist abgelaufen oder stammt von einer anderen Seite. Laden Sie die Seite neu.",
        "error.bad_request": "Die Anfrage ist unverständlich.",
        "error.too_large": "Die Anfrage ist zu groß.",
        "error.timeout": "Die Anfrage kam zu langsam an. Bitte versuchen Sie es erneut.",
        "error.changed": "Die Telefonnummer Ihres Kontos hat sich während der Bestätigung geändert. Bitte beginnen Sie neu.",
        "error.title": "Bestätigung",
    },
}

APP_NAME_FORMAT = {"en": " from {name}", "es": " de {name}", "fr": " de {name}", "de": " von {name}"}


def normalize_language(tag: str | None, default: str = "en") -> str:
    """A supported language for ``tag`` (``"fr-CA"`` -> ``"fr"``), else ``default``."""
    if tag:
        primary = tag.strip().split("-")[0].split("_")[0].lower()
        if primary in MESSAGES:
            return primary
    return default if default in MESSAGES else "en"


def negotiate(accept_language: str | None, default: str = "en") -> str:
    """The best supported language of an ``Accept-Language`` header; never fails."""
    if not accept_language:
        return normalize_language(default)
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(accept_language[:512].split(",")):
        pieces = part.strip().split(";")
        quality = 1.0
        for param in pieces[1:]:
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if pieces[0] and quality > 0:
            ranked.append((-quality, index, pieces[0]))
    for _q, _i, tag in sorted(ranked):
        primary = tag.split("-")[0].lower()
        if primary in MESSAGES:
            return primary
    return normalize_language(default)


def translate(language: str, key: str, **values: object) -> str:
    table = MESSAGES.get(language, MESSAGES["en"])
    text = table.get(key) or MESSAGES["en"].get(key, key)
    return text.format(**values) if values else text


def spoken_digits(code: str, language: str) -> str:
    """``"012"`` -> ``"0, 1, 2"``: one digit at a time, with pauses, zeros kept."""
    return ", ".join(code)


def languages() -> Iterable[str]:
    return MESSAGES.keys()
