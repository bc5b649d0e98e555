"""What the pages and the call say: the English texts (``messages``) and the gettext
catalogs of every language, with plural forms and durations in words (``catalogs``)."""
