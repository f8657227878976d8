"""A DNS server for tests: one name, several A records, changeable while it runs.

It stands in for what agents meet in production (a Kubernetes headless
service answering with one A record per pod) so that a test can resolve a
seed name through the real system resolver: ``getaddrinfo`` reads
``resolv.conf``, asks this server over UDP, and gets every address.

Answers: A records for the served name (TTL 0, so nothing caches them),
an empty NOERROR for other types of that name (AAAA), NXDOMAIN for any other
name, FORMERR for what does not parse. Every question is recorded with its
source address, so a test can tell which host asked and how often.

The server runs in a thread of the test process (``start``/``stop``), reads
with a short timeout so ``stop`` is prompt, and binds only the address it is
given (a test's own bridge or loopback address).
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

__all__ = ["DnsStub"]

POLL = 0.1
"""Seconds a read waits before checking whether to stop."""


@dataclass
class DnsStub:
    """Serve ``name`` as ``addresses`` (A records) on ``host:port`` (UDP)."""

    host: str
    name: str
    addresses: list[str]
    port: int = 53
    questions: list[tuple[str, str, str]] = field(default_factory=list)
    """(source host, name asked, type) of every question, in order."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _sock: socket.socket | None = None

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((self.host, self.port))
        sock.settimeout(POLL)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="dns-stub", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()

    def serve(self, addresses: list[str]) -> None:
        """From now on, answer with ``addresses``."""
        with self._lock:
            self.addresses = list(addresses)

    def asked_by(self, host: str) -> int:
        """How many questions came from ``host``."""
        with self._lock:
            return sum(1 for source, _, _ in self.questions if source == host)

    def _serve(self) -> None:
        assert self._sock is not None
        served = dns.name.from_text(self.name)
        while not self._stop.is_set():
            try:
                data, source = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            reply = self._answer(data, source[0], served)
            if reply is not None:
                self._sock.sendto(reply, source)

    def _answer(self, data: bytes, source: str, served: dns.name.Name) -> bytes | None:
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        with self._lock:
            self.questions.append(
                (source, question.name.to_text(), dns.rdatatype.to_text(question.rdtype))
            )
            addresses = list(self.addresses)
        if question.name != served:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.A and addresses:
            response.answer.append(
                dns.rrset.from_text_list(
                    question.name, 0, dns.rdataclass.IN, dns.rdatatype.A, addresses
                )
            )
        return response.to_wire()
