"""``properties_value``: a value escaped for a Java ``.properties`` file.

Kafka's server.properties and ZooKeeper's zoo.cfg are read by ``java.util.Properties.load``
from a byte stream (ISO-8859-1), so a value is written the way ``Properties.store`` writes
one: backslash, tab, newline, carriage return and form feed as escapes, every other
character outside printable ASCII as ``\\uXXXX`` (UTF-16 units), and leading spaces (which
``load`` would drop) as ``\\ ``. A value can then neither end its line nor add a key. ``=``,
``:``, ``#`` and ``!`` are read literally inside a value and are left as they are.
"""

from __future__ import annotations

_NAMED = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}


def properties_value(value) -> str:
    text = str(value)
    out = []
    leading = True
    for char in text:
        leading = leading and char == " "
        if leading:
            out.append("\\ ")
        elif char in _NAMED:
            out.append(_NAMED[char])
        elif " " <= char <= "~":
            out.append(char)
        else:
            data = char.encode("utf-16-be")
            out.extend(f"\\u{data[i]:02x}{data[i + 1]:02x}" for i in range(0, len(data), 2))
    return "".join(out)


class FilterModule:
    def filters(self):
        return {"properties_value": properties_value}
