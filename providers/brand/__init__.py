"""The brand vendor: one text to many ``numbers``, GET delivery callbacks.

``protocol`` (the wire: parameters, number and time formats, answers, the
error-code -> HTTP status table, callback fields), ``account`` (its table of
the providers file), ``adapter`` (sending), ``reports`` (reading its
callbacks) and ``vendor`` (its line in :mod:`providers.registry`).
"""
