"""Every text of the pages and the call, in English: the source of the gettext catalogs.

Each entry is keyed by the name the code uses (``"page.title"``), which is also the entry's
``msgctxt`` in the catalogs, so an English wording change never mixes two messages up.
A plural entry has exactly one placeholder: its count, which picks the form.

``pybabel extract`` reads this file (see ``voice2fa_middleware/locale/README.md``)::

    pybabel extract --no-default-keywords -k message:1c,2 -k plural:1c,2,3 ...
"""

from __future__ import annotations

from typing import NamedTuple


class Message(NamedTuple):
    key: str
    singular: str
    plural: str | None = None


def message(key: str, text: str) -> Message:
    return Message(key, text)


def plural(key: str, singular: str, plural: str) -> Message:
    return Message(key, singular, plural)


_ALL = (
    # -- the call --------------------------------------------------------------------------
    # TRANSLATORS: put inside say.intro as {app} when the app has a name.
    message("say.app", " from {name}"),
    message("say.intro", "Hello. This is a verification call{app}. Press any key to hear your code."),
    # TRANSLATORS: said right after say.intro, inside the same key press prompt.
    message("say.not_me", "If you did not try to sign in, press 9."),
    message("say.no_key", "We did not receive a key press. Goodbye."),
    # TRANSLATORS: {digits} is the code, one digit at a time with pauses ("0, 1, 2").
    message("say.code", "Your verification code is: {digits}."),
    message("say.again", "Again, your code is: {digits}."),
    message("say.repeat", "Press 1 to hear it again."),
    message("say.goodbye", "Thank you. Goodbye."),
    message("say.expired", "This code has expired. Please request a new call. Goodbye."),
    # TRANSLATORS: after the person called pressed 9 (they did not try to sign in).
    message(
        "say.reported",
        "Thank you. We will not read the code, and we will not call you for a while. "
        "If you did not try to sign in, change your password. Goodbye.",
    ),
    # -- the verify page --------------------------------------------------------------------
    message("page.title", "Verify it's you"),
    # TRANSLATORS: {phone} is the masked number, such as "•••• 0143".
    message("page.lead", "We are calling {phone}. Answer, press a key, and type the code you hear."),
    message("page.code_label", "Verification code"),
    plural("page.code_hint", "{digits} digit, spoken twice", "{digits} digits, spoken twice"),
    message("page.submit", "Verify"),
    message("page.resend", "Call me again"),
    # TRANSLATORS: a countdown, updated every second.
    plural(
        "page.resend_wait",
        "You can ask for a new call in {seconds} second.",
        "You can ask for a new call in {seconds} seconds.",
    ),
    plural("page.remember", "Remember this device for {days} day", "Remember this device for {days} days"),
    message("page.cancel", "Cancel"),
    message("page.signout", "Sign out"),
    # TRANSLATORS: a link to the site's help or contact page, on every page when set.
    message("page.help", "Help and contact"),
    message("page.status", "Call status"),
    message("page.status.queued", "Calling…"),
    message("page.status.initiated", "Calling…"),
    message("page.status.ringing", "Ringing…"),
    message("page.status.in-progress", "Answered: listen for your code."),
    message("page.status.answered", "Answered: listen for your code."),
    message("page.status.completed", "The call has ended."),
    message("page.status.busy", "The line was busy. Ask for a new call."),
    message("page.status.no-answer", "The call was not answered. Ask for a new call."),
    message("page.status.failed", "The call could not be completed. Ask for a new call."),
    message("page.status.canceled", "The call was canceled. Ask for a new call."),
    # TRANSLATORS: answering machine detection found that voicemail took the call.
    message(
        "page.status.machine",
        "Your voicemail answered, so the code was not read. Keep your phone at hand and ask for a new call.",
    ),
    # TRANSLATORS: someone pressed 9 in the call ("I did not try to sign in").
    message(
        "page.status.reported",
        "You reported this call. If it was you after all, try again later; if not, change your password.",
    ),
    message("page.sent", "We are calling you again. The previous code no longer works."),
    message("error.background", "This needs a verification call first. Open the page again to start it."),
    message("page.kept", "Your changes are kept: after you enter the code, you can submit them again."),
    message("page.unsaved", "Your changes were not saved. After you enter the code, go back and submit them again."),
    message("resubmit.title", "Submit your changes again?"),
    message("resubmit.text", "You are verified. Your changes have not been saved yet: submit them again to save them."),
    message("resubmit.submit", "Submit my changes again"),
    message("resubmit.discard", "Discard them and go back"),
    # -- errors -----------------------------------------------------------------------------
    message("error.invalid_code", "That code is not right or has expired."),
    plural("error.attempts_left", "{n} attempt left.", "{n} attempts left."),
    message("error.dead", "Too many wrong codes. Ask for a new call."),
    message("error.no_challenge", "No verification is in progress, or it has expired."),
    message("error.continue", "Start again"),
    # TRANSLATORS: {duration} is one of the duration.* texts, such as "in 58 minutes".
    message("error.locked", "Too many wrong codes. Try again {duration}."),
    message("error.rate_limited", "Too many calls. Try again {duration}."),
    message("error.call_failed", "We could not place the call."),
    # TRANSLATORS: {duration} as in error.locked.
    message(
        "error.reported",
        "You reported a call you did not expect; calls are paused. Try again {duration}. "
        "If you did not try to sign in, change your password.",
    ),
    message(
        "error.call_reported",
        "You reported this call. If it was you after all, try again later; if not, change your password.",
    ),
    # TRANSLATORS: more calls are asked for than the provider takes per second; {duration} as in error.locked.
    message("error.calls_busy", "We are placing many calls right now. Try again {duration}."),
    message("error.provider_unavailable", "Calls are unavailable right now."),
    message("error.store", "Verification is unavailable right now."),
    message("error.phone", "We cannot call the phone number on your account."),
    message(
        "error.phone_country",
        "We cannot call the phone number on your account: this site does not place calls to its country.",
    ),
    message(
        "error.phone_voip",
        "We cannot call internet phone (VoIP) numbers, and the number on your account is one. "
        "Use a recovery code, or ask the site's support to change the number.",
    ),
    # TRANSLATORS: added after an error that says nothing of when; {duration} as in error.locked.
    message("error.retry", "You can try again {duration}."),
    # TRANSLATORS: a countdown clock under the error, such as "57:58" or "1:02:03".
    message("error.remaining", "Time left: {time}"),
    message("error.ready", "You can try again now."),
    message("error.try_again", "Try again"),
    message("error.home", "Back to the home page"),
    message("error.csrf", "This form has expired or came from another site. Reload the page and try again."),
    message("error.bad_request", "The request could not be understood."),
    message("error.too_large", "The request is too large."),
    message("error.timeout", "The request took too long to arrive. Please try again."),
    message("error.changed", "Your account's phone changed while you were verifying. Please start again."),
    message("error.title", "Verification"),
    message(
        "error.no_phone",
        "Your account has no phone number for the voice check. Add one in your account settings, "
        "or contact the site's support.",
    ),
    # -- the phone number page (enrolment) ------------------------------------------------------
    message("enrol.title", "Your phone number"),
    message("enrol.lead_new", "Add a phone number for sign-in checks. We will call it once to confirm it is yours."),
    # TRANSLATORS: {phone} is the masked current number, such as "•••• 0143".
    message(
        "enrol.lead_change",
        "Your number is {phone}. To change it, enter the new one: we will call it to confirm.",
    ),
    message("enrol.phone_label", "Phone number"),
    # TRANSLATORS: {example} is a phone number written the international way, such as "+1 201-555-0123".
    message("enrol.phone_hint", "With the country code, such as {example}."),
    message("enrol.submit", "Call me to confirm"),
    message("enrol.confirm_title", "Confirm your number"),
    message("enrol.invalid", "That is not a phone number. Check it and include the country code."),
    message("enrol.number_type", "We cannot call this kind of number. Use a mobile or landline number."),
    message("enrol.voip", "We cannot call internet phone (VoIP) numbers. Use a mobile or landline number."),
    message("enrol.country", "This site does not place calls to that country."),
    message("enrol.same", "That is already your number."),
    message("enrol.failed", "Your number was confirmed but could not be saved. Please try again."),
    # -- recovery codes: sign in without the phone ----------------------------------------------
    message("recovery.title", "Recovery codes"),
    message(
        "recovery.lead",
        "Recovery codes let you sign in when you cannot answer a call to your phone. Each code works once.",
    ),
    plural("recovery.remaining", "You have {n} unused code.", "You have {n} unused codes."),
    message("recovery.none", "You have no recovery codes left. Create a new set now."),
    message("recovery.create", "Create new codes"),
    message("recovery.create_hint", "Creating new codes ends the codes you had before."),
    message(
        "recovery.created",
        "Save these codes now: they will not be shown again. Keep them somewhere safe, away from your phone.",
    ),
    message("recovery.download", "Download"),
    message("recovery.print", "Print"),
    message("recovery.done", "Continue"),
    message("recovery.use_link", "Use a recovery code instead"),
    message("recovery.use_title", "Use a recovery code"),
    message("recovery.use_lead", "Type one of the recovery codes you saved. Each code works once."),
    message("recovery.code_label", "Recovery code"),
    # TRANSLATORS: {example} is a made-up code, such as "abcde-23456".
    message("recovery.code_hint", "Ten letters and digits, such as {example}."),
    message("recovery.submit", "Use this code"),
    message("recovery.invalid", "That recovery code is not right or was already used."),
    plural("recovery.left", "Recovery code accepted. {n} code left.", "Recovery code accepted. {n} codes left."),
    message("recovery.last", "Recovery code accepted. That was your last one: create a new set of codes now."),
    # -- durations, as error.locked and error.rate_limited put them ----------------------------
    plural("duration.seconds", "in {seconds} second", "in {seconds} seconds"),
    plural("duration.minutes", "in {minutes} minute", "in {minutes} minutes"),
    plural("duration.hours", "in {hours} hour", "in {hours} hours"),
)

MESSAGES: dict[str, Message] = {m.key: m for m in _ALL}
