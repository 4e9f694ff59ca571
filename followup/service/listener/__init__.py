"""The DICOM listener: a pynetdicom SCP that PACS auto-routes follow-up studies to.

One job a module:

* ``validation``: the checks of one received instance (header parsed, pixels never decoded):
  UIDs, SOP class and modality, pixel data and geometry, the size and study bounds; a refusal
  is a ``Refused`` with its C-STORE status and reason.
* ``handler``: the C-STORE handler (``StoreHandler``): store atomically and register before the
  success status is sent, duplicates, the quarantine (a row per entry in the registry).
* ``known_studies``: each recent study's Patient ID and instance count, kept in memory for the
  study checks.
* ``quarantine_entry``: a refused instance kept in the quarantine with its reason, and its row in
  the registry.
* ``study_patient``: which patient a study belongs to when an instance of another arrives (the
  rule; docs/security/listener.md).
* ``encapsulated``: compressed pixel data checked against its header (never decoded).
* ``guard``: the wire bounds of each connection: the A-ASSOCIATE-RQ's size and AE titles read
  first, a PDU timeout, the per-calling-AE share of the association slots.
  ``followup.service.importer`` puts files from a folder through the same handler.
* ``association``: per connection and association: the deferred TLS handshake, the guard that
  drops an oversized instance's bytes as they arrive, the association log lines and counts.
* ``server``: the AE (calling- and called-AE checks, presentation contexts, association limit,
  timeouts), TLS,
  the spool cleaned at start, and the stability monitor run beside it (``serve_dicom``).
* ``statuses``: the C-STORE statuses.

What it does:

* C-ECHO (Verification) and C-STORE of MR Image, Enhanced MR Image, Legacy Converted Enhanced MR
  Image, Comprehensive 3D SR, Enhanced SR, Segmentation and Encapsulated PDF, in the uncompressed
  and the usual compressed transfer syntaxes. Bytes are stored as received; pixels are never
  decoded (only the header is parsed).
* Calling-AE allow-list: an association from any other calling AE title is rejected with
  A-ASSOCIATE-RJ (rejected-permanent, service-user, "calling AE title not recognised"), from the
  request's first 42 bytes; one addressed to another called AE title likewise ("called AE
  title not recognised"); a request larger than ``max_associate_bytes`` is rejected unread.
* An accepted instance is written durably (spool temp file + fsync + rename + directory fsync)
  to ``store/<Study>/<Series>/<SOP>.dcm`` and registered *before* the success status is sent.
  If the write or the registry insert fails, the answer is 0xA700 (out of resources) so the PACS
  retries, and no file is left behind.
* Refused input (header that cannot be parsed, missing or invalid UIDs, SOP Instance/Class UID
  differing from the C-STORE request, a modality that does not fit the SOP class; for images: no
  pixel data, pixel data shorter than the header declares, an empty or absurd matrix, non-finite
  geometry, compressed pixel data that cannot hold the declared image; an instance of another
  patient than its study's; other content under a stored SOP Instance UID) is kept in the
  quarantine with its reason and answered with a failure status (0xC000 cannot understand or
  0xA900 data set does not match SOP class): never silently dropped. An instance of another
  patient is quarantined alone (the study-patient rule decides whose the study is), the study
  flagged for review; ``followup quarantine`` and ``/admin/quarantine`` release or discard.
* Resource bounds (``Settings``): an instance larger than ``max_instance_bytes`` is answered
  0xA701 and one beyond ``max_study_instances`` of its study 0xA702; of those the quarantine
  keeps only the first 64 KiB (the header) with the reason, so it cannot be filled through them.
  While an instance arrives, the bytes beyond the maximum are dropped as they come (a guard on
  the received P-DATA PDUs), so an oversized instance never takes more memory than the maximum.
  ``max_associations`` concurrent associations at most, ``max_associations_per_ae`` of them from
  one calling AE (more are rejected, transient). A PDU must arrive whole within
  ``pdu_timeout_s``; ACSE, network and DIMSE timeouts drop silent peers.
* DICOM TLS when the settings name a certificate and key, mutual TLS with a CA bundle
  (``followup.service.tls``).
* A duplicate SOP Instance UID keeps the first file: the same data set is answered with success
  (logged), other content is quarantined (0xC000).
* Logs carry UIDs, AE titles, addresses and counts; never patient identifiers.
"""

from followup.service.listener.association import MessageSizeGuard
from followup.service.listener.handler import StoreHandler
from followup.service.listener.server import (
    DEFAULT_MAX_PDU,
    TRANSFER_SYNTAXES,
    build_ae,
    listener_ssl_context,
    serve_dicom,
)
from followup.service.listener.statuses import (
    CANNOT_UNDERSTAND,
    DATASET_DOES_NOT_MATCH,
    INSTANCE_TOO_LARGE,
    OUT_OF_RESOURCES,
    STUDY_TOO_LARGE,
    SUCCESS,
)
from followup.service.listener.validation import (
    QUARANTINE_KEEP_BYTES,
    STORAGE_CLASSES,
    ReceivedInstance,
    Refused,
    validate_instance,
)

__all__ = [
    "CANNOT_UNDERSTAND", "DATASET_DOES_NOT_MATCH", "DEFAULT_MAX_PDU", "INSTANCE_TOO_LARGE",
    "OUT_OF_RESOURCES", "QUARANTINE_KEEP_BYTES", "STORAGE_CLASSES", "STUDY_TOO_LARGE", "SUCCESS",
    "TRANSFER_SYNTAXES", "MessageSizeGuard", "ReceivedInstance", "Refused", "StoreHandler",
    "build_ae", "listener_ssl_context", "serve_dicom", "validate_instance",
]
