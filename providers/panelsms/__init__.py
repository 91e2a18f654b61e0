"""The panelsms vendor (``sendMtSms.php``): one folder for all it says and means.

``protocol`` (the wire: parameters, DCS and UDH values, booleans, times, the
three answer formats, the report body), ``account`` (its table of the providers
file), ``adapter`` (sending), ``reports`` (reading its delivery reports) and
``vendor`` (its line in :mod:`providers.registry`).
"""
