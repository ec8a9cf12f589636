"""The compliance officers' console: server-rendered pages under /console on the hub's app (docs/console.md).

| module | one job |
| --- | --- |
| `app.py` | the sub-application: the guard (secure context, session, CSRF, headers) and thin page handlers |
| `settings.py` | the `[console]` configuration as the app uses it |
| `accounts.py` | officers: argon2id passwords, TOTP, roles, pinned key fingerprints, their SQL |
| `sessions.py` | server-side sessions, CSRF tokens, sign-in throttling |
| `queries.py` | what the pages read, narrowed to what the officer may see |
| `payloads.py` | the one function that reads a payload |
| `persons.py` | the keyed blind index of identity numbers (find by person) |
| `i18n.py` | the words in English, Traditional and Simplified Chinese; times in the officer's zone |
| `templates/`, `static/` | the HTML, the stylesheet, and `verify.js`, the in-browser proof check |
"""
