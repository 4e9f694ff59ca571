"""DICOM TLS, for real: a CA, server and client certificates (and a rogue CA with its own client)
made with the openssl command line in the test; the listener with mutual TLS on 127.0.0.1;
pynetdicom and dcmtk's storescu as senders; our SCU (send_files, find_studies, get_study)
against a standard pynetdicom TLS SCP."""

from __future__ import annotations

import datetime as dt
import logging
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    MRImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    Verification,
)

from followup.config import Settings
from followup.remote_nodes import DicomNode
from followup.service import tls
from followup.service.listener import TRANSFER_SYNTAXES, serve_dicom
from followup.service.pacs import (
    PacsError,
    find_studies,
    get_study,
    scu_context,
    send_files,
)
from followup.service.store import Store
from followup.testing.service_harness import free_port, require

OUR_AET, PACS_AET = "FOLLOWUP", "PACS"

OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA every legitimate party trusts
    server: Pair  # the listener's (and our SCU's) certificate
    client: Pair  # the PACS's client certificate, signed by ca
    rogue_ca: Path
    rogue_client: Pair  # a client certificate the rogue CA signed


def _openssl(d: Path, *args: str) -> None:
    r = subprocess.run(["openssl", *args], check=False, cwd=d, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def _ca(d: Path, name: str) -> tuple[Path, Path]:
    _openssl(d, "req", "-x509", "-new", "-config", "openssl.cnf", "-extensions", "ca", "-newkey", "ec",
             "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{name}.key", "-out",
             f"{name}.pem", "-days", "2", "-subj", f"/CN={name}")
    return d / f"{name}.pem", d / f"{name}.key"


def _leaf(d: Path, name: str, ca: tuple[Path, Path], serial: int) -> Pair:
    _openssl(d, "req", "-new", "-config", "openssl.cnf", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={name}")
    _openssl(d, "x509", "-req", "-in", f"{name}.csr", "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-set_serial", str(serial), "-days", "2", "-extfile", "openssl.cnf", "-extensions", "leaf",
             "-out", f"{name}.pem")
    return Pair(d / f"{name}.pem", d / f"{name}.key")


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    require("openssl", "openssl")
    d = tmp_path_factory.mktemp("pki")
    (d / "openssl.cnf").write_text(OPENSSL_CNF)
    ca, rogue = _ca(d, "test-ca"), _ca(d, "rogue-ca")
    return Pki(ca=ca[0], server=_leaf(d, "followup-node", ca, 1), client=_leaf(d, "pacs-node", ca, 2),
               rogue_ca=rogue[0], rogue_client=_leaf(d, "rogue-node", rogue, 3))


@pytest.fixture(scope="module")
def instances(synth_pair) -> list[Path]:
    """Real MR instances: the first slices of a synthetic follow-up."""
    return sorted((synth_pair("complete", 3) / "followup").glob("*.dcm"))[:3]


class TlsListener:
    def __init__(self, data_dir: Path, pki: Pki, mutual: bool = True) -> None:
        self.port = free_port()
        self.settings = Settings(data_dir=data_dir, ae_title=OUR_AET, tls_cert=pki.server.cert,
                                 tls_key=pki.server.key, tls_ca=pki.ca if mutual else None)
        self.server = serve_dicom(self.settings, port=self.port, allow=[PACS_AET], quiet_seconds=3600,
                                  on_stable=lambda uid: None, block=False, poll_seconds=0.5)
        self.store: Store = self.server.store

    def stored(self) -> list[Path]:
        return sorted(self.store.instances.rglob("*.dcm"))

    def nothing_kept(self) -> bool:
        return (not self.stored() and not list(self.store.quarantine_dir.iterdir())
                and not self.server.registry.studies())


@pytest.fixture
def listener(tmp_path, pki):
    lst = TlsListener(tmp_path / "data", pki)
    yield lst
    lst.server.shutdown()


def scu(calling: str = PACS_AET) -> AE:
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    for ts in TRANSFER_SYNTAXES[:2]:
        ae.add_requested_context(MRImageStorage, ts)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = 10
    return ae


def client_ctx(pair: Pair | None, ca: Path) -> ssl.SSLContext:
    return tls.client_context(pair.cert if pair else None, pair.key if pair else None, ca)


def associate(port: int, ctx: ssl.SSLContext | None):
    return scu().associate("127.0.0.1", port, ae_title=OUR_AET,
                           tls_args=(ctx, "127.0.0.1") if ctx is not None else None)


def handshake_failures(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "TLS handshake with" in r.getMessage()]


def wait_for_log(caplog, n: int = 1, timeout: float = 15.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(handshake_failures(caplog)) < n:
        time.sleep(0.05)
    return handshake_failures(caplog)


# --- the listener ---------------------------------------------------------------------------------
def test_instance_stored_over_mutual_tls(listener, pki, instances, caplog):
    caplog.set_level(logging.INFO, logger="followup")
    assoc = associate(listener.port, client_ctx(pki.client, pki.ca))
    assert assoc.is_established
    try:
        sock = assoc.dul.socket.socket
        assert isinstance(sock, ssl.SSLSocket) and sock.version() in ("TLSv1.2", "TLSv1.3")
        assert assoc.send_c_echo().Status == 0
        statuses = [assoc.send_c_store(dcmread(p)).Status for p in instances]
    finally:
        assoc.release()
    assert statuses == [0, 0, 0]
    stored = listener.stored()
    assert len(stored) == len(instances)
    for src in instances:
        ds = dcmread(src)
        dst = listener.store.instance_path(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        assert dcmread(dst).PixelData == ds.PixelData
    assert listener.server.registry.study(dcmread(instances[0]).StudyInstanceUID).n_instances == 3
    assert any("CN='pacs-node'" in r.getMessage() for r in caplog.records)  # the peer, as logged


def test_plain_association_is_refused(listener, caplog):
    caplog.set_level(logging.WARNING, logger="followup")
    t0 = time.monotonic()
    assoc = associate(listener.port, None)
    assert not assoc.is_established
    assert time.monotonic() - t0 < 10, "a plain association must fail fast, not time out"
    assert wait_for_log(caplog), "the refused handshake was not logged"
    assert listener.nothing_kept()


@pytest.mark.parametrize("who", ["rogue-ca", "no-certificate"])
def test_client_not_signed_by_the_ca_is_refused(listener, pki, who, caplog):
    caplog.set_level(logging.WARNING, logger="followup")
    pair = pki.rogue_client if who == "rogue-ca" else None
    assoc = associate(listener.port, client_ctx(pair, pki.ca))
    established = assoc.is_established
    if established:  # never expected; release rather than leave it hanging
        assoc.release()
    assert not established
    (msg,) = wait_for_log(caplog)
    assert "certificate" in msg.lower() and "127.0.0.1" in msg
    assert listener.nothing_kept()


def test_server_only_tls_accepts_a_client_without_certificate(tmp_path, pki, instances):
    lst = TlsListener(tmp_path / "data", pki, mutual=False)
    try:
        assoc = associate(lst.port, client_ctx(None, pki.ca))
        assert assoc.is_established
        assert assoc.send_c_store(dcmread(instances[0])).Status == 0
        assoc.release()
        assert len(lst.stored()) == 1
        assert not associate(lst.port, None).is_established  # plain DICOM still refused
    finally:
        lst.server.shutdown()


def test_a_silent_client_does_not_block_the_others(listener, pki, instances):
    """The handshake runs in the connection's thread: a peer that connects and says nothing
    must not hold up the accept loop."""
    with socket.create_connection(("127.0.0.1", listener.port)):
        time.sleep(0.3)  # the server has accepted it by now
        t0 = time.monotonic()
        assoc = associate(listener.port, client_ctx(pki.client, pki.ca))
        assert assoc.is_established
        assert assoc.send_c_store(dcmread(instances[0])).Status == 0
        assoc.release()
        assert time.monotonic() - t0 < 8
    assert len(listener.stored()) == 1


def test_unknown_calling_ae_rejected_over_tls_too(listener, pki):
    assoc = scu("INTRUDER").associate("127.0.0.1", listener.port, ae_title=OUR_AET,
                                      tls_args=(client_ctx(pki.client, pki.ca), "127.0.0.1"))
    assert assoc.is_rejected
    assert listener.nothing_kept()


def test_storescu_over_tls(listener, pki, instances):
    exe = require("storescu", "dcmtk")
    base = [exe, "-aet", PACS_AET, "-aec", OUR_AET, "-to", "20", "-ta", "20", "-td", "20"]
    r = subprocess.run([*base, "+tls", str(pki.client.key), str(pki.client.cert), "+cf", str(pki.ca),
                        "127.0.0.1", str(listener.port), *map(str, instances)],
                       check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(listener.stored()) == len(instances)
    # the same sender without TLS gets nowhere
    r = subprocess.run([*base, "127.0.0.1", str(listener.port), str(instances[0])],
                       check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    # and a storescu with the rogue CA's certificate neither
    rogue = subprocess.run([*base, "+tls", str(pki.rogue_client.key), str(pki.rogue_client.cert), "+cf",
                            str(pki.ca), "127.0.0.1", str(listener.port), str(instances[0])],
                           check=False, capture_output=True, text=True, timeout=120)
    assert rogue.returncode != 0
    assert len(listener.stored()) == len(instances)


def test_tls_settings_are_checked(tmp_path, pki, monkeypatch):
    with pytest.raises(ValueError, match="both"):
        Settings(data_dir=tmp_path, tls_cert=pki.server.cert)
    with pytest.raises(ValueError, match="not a readable file"):
        serve_dicom(Settings(data_dir=tmp_path, tls_cert=tmp_path / "missing.pem", tls_key=pki.server.key),
                    port=free_port(), allow=[PACS_AET], quiet_seconds=1, on_stable=lambda u: None, block=False)
    monkeypatch.setenv("FOLLOWUP_DESTINATION", "PACS@pacs.example:2762")
    monkeypatch.setenv("FOLLOWUP_TLS_DESTINATION", "1")
    monkeypatch.setenv("FOLLOWUP_RETRIEVE", "PACS@pacs.example:104")
    s = Settings.from_env(data_dir=tmp_path)
    assert s.destination.tls and str(s.destination) == "PACS@pacs.example:2762/tls"
    assert not s.retrieve_from.tls
    assert DicomNode.parse(str(s.destination)) == s.destination


# --- our SCU --------------------------------------------------------------------------------------
class TlsPacs:
    """A standard pynetdicom SCP behind TLS (the library's own accept-loop handshake, client
    certificates required): C-STORE, and C-FIND / C-GET over what it holds."""

    def __init__(self, pki: Pki, held: list[Path]) -> None:
        self.port = free_port()
        self.received: list[Dataset] = []
        self.held = [dcmread(p) for p in held]
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_cert_chain(str(pki.client.cert), str(pki.client.key))
        ae = AE(ae_title=PACS_AET)
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelGet)
        ae.add_supported_context(MRImageStorage, TRANSFER_SYNTAXES[:2], scu_role=True, scp_role=True)
        self.server = ae.start_server(("127.0.0.1", self.port), block=False, ssl_context=ctx, evt_handlers=[
            (evt.EVT_C_STORE, self.on_store), (evt.EVT_C_FIND, self.on_find), (evt.EVT_C_GET, self.on_get)])

    def on_store(self, event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        self.received.append(ds)
        return 0x0000

    def on_find(self, event):
        for uid in sorted({str(ds.StudyInstanceUID) for ds in self.held}):
            ident = Dataset()
            ident.QueryRetrieveLevel = "STUDY"
            ident.StudyInstanceUID = uid
            ident.StudyDate = next(str(d.StudyDate) for d in self.held if d.StudyInstanceUID == uid)
            yield 0xFF00, ident

    def on_get(self, event):
        wanted = str(event.identifier.StudyInstanceUID)
        matches = [ds for ds in self.held if str(ds.StudyInstanceUID) == wanted]
        yield len(matches)
        for ds in matches:
            yield 0xFF00, ds


@pytest.fixture
def pacs(pki, instances):
    p = TlsPacs(pki, instances)
    yield p
    p.server.shutdown()


def test_send_files_over_tls(pacs, pki, instances, monkeypatch):
    node = DicomNode(PACS_AET, "127.0.0.1", pacs.port, tls=True)
    send_files(instances[:2], node, OUR_AET, ssl_context=client_ctx(pki.server, pki.ca))
    assert [str(ds.SOPInstanceUID) for ds in pacs.received] == [
        str(dcmread(p).SOPInstanceUID) for p in instances[:2]]
    # as a worker does it: the node parsed back from its text, TLS files from the environment
    # (read into Settings; scu_context makes the context from them)
    monkeypatch.setenv("FOLLOWUP_TLS_CERT", str(pki.server.cert))
    monkeypatch.setenv("FOLLOWUP_TLS_KEY", str(pki.server.key))
    monkeypatch.setenv("FOLLOWUP_TLS_CA", str(pki.ca))
    node = DicomNode.parse(f"{PACS_AET}@127.0.0.1:{pacs.port}/tls")
    send_files(instances[2:], node, OUR_AET, ssl_context=scu_context(Settings.from_env(), node))
    assert len(pacs.received) == 3
    assert pacs.received[2].PixelData == dcmread(instances[2]).PixelData


@pytest.mark.parametrize("case", ["plain", "untrusted-server", "no-client-certificate"])
def test_send_files_refuses_to_go_unprotected(pacs, pki, instances, case):
    node = DicomNode(PACS_AET, "127.0.0.1", pacs.port, tls=case != "plain")
    ctx = {"plain": None, "untrusted-server": client_ctx(pki.server, pki.rogue_ca),
           "no-client-certificate": client_ctx(None, pki.ca)}[case]
    with pytest.raises(PacsError, match="refused or not reachable"):
        send_files(instances[:1], node, OUR_AET, ssl_context=ctx)
    assert pacs.received == []


def test_send_files_to_our_own_tls_listener(listener, pki, instances):
    node = DicomNode(OUR_AET, "localhost", listener.port, tls=True)  # the certificate names localhost
    send_files(instances, node, PACS_AET, ssl_context=client_ctx(pki.client, pki.ca))
    assert len(listener.stored()) == len(instances)


def test_find_and_get_over_tls(pacs, pki, instances, tmp_path):
    node = DicomNode(PACS_AET, "127.0.0.1", pacs.port, tls=True)
    ctx = client_ctx(pki.server, pki.ca)
    first = dcmread(instances[0])
    matches = find_studies(node, OUR_AET, str(first.PatientID), dt.date(2100, 1, 1), ssl_context=ctx)
    assert [m.study_uid for m in matches] == [str(first.StudyInstanceUID)]
    store, got = Store(tmp_path / "data"), []
    n = get_study(node, OUR_AET, matches[0].study_uid, store, lambda path, ds: got.append(path),
                  ssl_context=ctx)
    assert n == len(instances) and len(got) == len(instances)
    assert sorted(str(dcmread(p).SOPInstanceUID) for p in got) == sorted(
        str(dcmread(p).SOPInstanceUID) for p in instances)
    with pytest.raises(PacsError, match="TLS"):
        find_studies(node, OUR_AET, "x", dt.date(2100, 1, 1), ssl_context=client_ctx(None, pki.ca))
