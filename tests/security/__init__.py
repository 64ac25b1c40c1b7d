"""The hostile-input suite: every attack of issue 22, and the ones that already failed, as
tests a reviewer can read in one place (docs/threat-model.md maps them to the controls).

- test_secret.py: the session secret (empty or short refused, created atomically, 0600).
- test_sessions.py: forged, revoked (logout, password reset, role change), idle and
  over-age sessions; fixation; CSRF.
- test_login.py: one answer and one argon2 verification for every refusal; parallel log-ins
  counted before the password is checked; no stranger at another address can lock a
  moderator out; the per-address throttle.
- test_console_input.py: ids in URLs, notices, XSS, bidi controls, open redirects, deep
  pages and far dates, body size, photo caching, error headers, reason codes, role checks.
- test_intake.py: `modq submit` with hostile lines among good ones: every line accepted or
  recorded with its line number, never a traceback, never a good line lost.
- test_exposure.py: the worker's /metrics and /healthz (loopback, no connection details)
  and the search's reason filter on its index.
"""
