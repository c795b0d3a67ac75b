#!/usr/bin/python
"""Send one of ZooKeeper's four-letter words to a server and return its answer."""

from __future__ import annotations

import socket

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: zookeeper_four_letter_word
short_description: Ask a ZooKeeper server a four-letter word (ruok, srvr, mntr...)
description:
  - Connects to I(host):I(port), sends I(word) and returns what the server answers before
    it closes the connection, as C(echo ruok | nc host port) would. Never changes anything.
  - A server that does not answer is a failure; an answer of any kind is returned as
    C(answer) (a word outside the server's whitelist gets its "not executed" text).
options:
  host:
    description: The server's address.
    type: str
    required: true
  port:
    description: The client port.
    type: int
    default: 2181
  word:
    description: The four-letter word.
    type: str
    default: ruok
  timeout:
    description: Seconds to wait for the connection and the answer.
    type: float
    default: 5
"""

EXAMPLES = r"""
- name: Ask ZooKeeper whether it is ok
  zookeeper_four_letter_word:
    host: 10.0.0.1
    word: ruok
  register: zookeeper_ruok
  failed_when: zookeeper_ruok.answer != 'imok'
"""

RETURN = r"""
answer:
  description: The server's answer.
  type: str
  returned: success
"""


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "host": {"type": "str", "required": True},
            "port": {"type": "int", "default": 2181},
            "word": {"type": "str", "default": "ruok"},
            "timeout": {"type": "float", "default": 5.0},
        },
        supports_check_mode=True,
    )
    params = module.params
    if len(params["word"]) != 4:
        module.fail_json(msg=f"not a four-letter word: {params['word']!r}")
    try:
        with socket.create_connection((params["host"], params["port"]),
                                      timeout=params["timeout"]) as sock:
            sock.sendall(params["word"].encode())
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
    except OSError as exc:
        module.fail_json(msg=f"no answer from {params['host']}:{params['port']}: {exc}")
    module.exit_json(changed=False, answer=b"".join(chunks).decode(errors="replace"))


if __name__ == "__main__":
    main()
