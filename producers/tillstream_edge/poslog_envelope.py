"""Where a document's POSLog transactions are, whatever it arrives wrapped in.

Tills write ``POSLog`` (or one bare ``Transaction``); integration software wraps the same
content in envelopes: a SOAP ``Envelope/Body``, an integration bus's ``Exchange`` or
``Message`` holding ``arts:POSLog`` or ``arts:Transaction`` elements. So the transactions
are looked for by local name: the root itself, else every ``POSLog`` inside the document,
else the outermost ``Transaction`` elements that look like POSLog transactions (a bus's own
bookkeeping element of that name has no workstation, sequence number or body).

A transaction set aside is kept as a document of its own (:func:`standalone`): its
``POSLog`` with the document-level elements some vendors put there (NCR writes the store
and business day once per file), card numbers masked in every text and attribute, and of a
customer only the ids (names, addresses, e-mail, telephone are never read, so never kept).
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass
from xml.etree.ElementTree import Element, tostring

from tillstream.core.pan import mask_pans
from tillstream_edge.poslog_kinds import body
from tillstream_edge.poslog_xml import PoslogError, local

ARTS_NAMESPACE = "http://www.nrf-arts.org/IXRetail/namespace/"
_MARKERS = frozenset({"WorkstationID", "SequenceNumber", "BusinessDayDate"})
# Who a customer is: of these only the ids are kept in a set-aside document.
_PEOPLE = frozenset({"Customer", "Receiver", "Recipient", "CustomerAccount", "Contact"})


@dataclass(frozen=True)
class Document:
    """The POSLog content of a parsed document."""

    transactions: list[Element]
    poslog: Element | None
    """The ``POSLog`` element the transactions are in (None: a bare ``Transaction``); its
    other children are document-level values (a store id, a business day)."""
    envelope: str | None
    """Where the content was found when it is wrapped, e.g. ``Envelope/Body/POSLog``."""

    def context(self, tx: Element) -> Element | None:
        """The ``POSLog`` element holding ``tx`` (document-level values), if any."""
        return self.poslog if self.poslog is not None and tx is not self.poslog else None


def find_transactions(root: Element) -> Document:
    """The transactions of a document; :class:`PoslogError` if it holds no POSLog content."""
    name = local(root.tag)
    if name == "POSLog":
        return Document(_children_named(root, "Transaction"), root, None)
    if name == "Transaction":
        return Document([root], None, None)
    found = _outermost(root, "POSLog")
    if found:
        transactions = [tx for poslog in found for tx in _children_named(poslog, "Transaction")]
        # One context per document: bus messages carry one POSLog (more: no shared values).
        context = found[0] if len(found) == 1 else None
        return Document(transactions, context, _where(root, found[0]))
    transactions = [t for t in _outermost(root, "Transaction") if _looks_like_transaction(t)]
    if transactions:
        return Document(transactions, None, _where(root, transactions[0]))
    raise PoslogError(
        f"no POSLog content: <{name}> is neither POSLog nor Transaction, and holds no POSLog "
        "or Transaction element (envelopes such as a SOAP Body or a bus Exchange are read)"
    )


def standalone(document: Document, tx: Element) -> bytes:
    """``tx`` as a POSLog document of its own, card numbers masked (see the module)."""
    holder = document.poslog
    tag = holder.tag if holder is not None else f"{{{ARTS_NAMESPACE}}}POSLog"
    root = Element(tag, dict(holder.attrib) if holder is not None else {})
    if holder is not None:
        root.extend(copy.deepcopy(e) for e in holder if local(e.tag) != "Transaction")
    root.append(copy.deepcopy(tx))
    for person in [e for e in root.iter() if local(e.tag) in _PEOPLE]:
        for detail in [d for d in person if not local(d.tag).lower().endswith("id")]:
            person.remove(detail)
    for element in root.iter():
        if element.text:
            element.text = mask_pans(element.text)
        if element.tail:
            element.tail = mask_pans(element.tail)
        for key, value in element.attrib.items():
            element.set(key, mask_pans(value))
    serialized: bytes = tostring(root, encoding="utf-8", xml_declaration=True)
    return serialized


def _children_named(element: Element, name: str) -> list[Element]:
    return [child for child in element if local(child.tag) == name]


def _outermost(root: Element, name: str) -> list[Element]:
    """Elements named ``name`` below ``root``, not looking inside one found."""
    found: list[Element] = []
    pending = deque(root)
    while pending:
        element = pending.popleft()
        if local(element.tag) == name:
            found.append(element)
        else:
            pending.extend(element)
    return found


def _looks_like_transaction(element: Element) -> bool:
    return body(element) is not None or any(local(c.tag) in _MARKERS for c in element)


def _where(root: Element, target: Element) -> str:
    """Local names from the root down to ``target`` (``Envelope/Body/POSLog``)."""
    parents = {child: parent for parent in root.iter() for child in parent}
    names = [local(target.tag)]
    element = target
    while element in parents:
        element = parents[element]
        names.append(local(element.tag))
    return "/".join(reversed(names))
